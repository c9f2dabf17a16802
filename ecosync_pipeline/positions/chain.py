"""The fallback chain: Redis, then the JSON backup, then the orders database.

    snapshot(stores)                 every layer read once (layer.PositionLayer.read_many)
    resolve(store, snapshot, api)    the first layer whose position classify() calls usable,
                                     else the database's; verified on the API
    get_position / restore_all       resolve, then write back what did not come from Redis

A layer's position is usable only when its last synced order id equals the database's
(the truth, DESIGN invariant 1): AHEAD it would skip the gap, BEHIND (stale) re-read
every page since, so the database decides. Every position is verified on the API before
it is returned, with the page fetched to verify it (the sync's first page, for free).

The chain knows its layers through the PositionLayer Protocol alone (positions.layer):
any three siblings compose, and factory.py is where the real ones are chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Generic

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.errors import ConfigError, EcosyncError
from ecosync_pipeline.positions.layer import LayerName, LayerRead, PositionLayer, Written
from ecosync_pipeline.positions.model import PositionStatus, SyncPosition
from ecosync_pipeline.positions.outcomes import (
    BackupReadT,
    DatabaseReadT,
    LayerOutcome,
    LayerPositions,
    RedisReadT,
    ResolvedPosition,
    RestoreReport,
    SaveResult,
    Snapshot,
)
from ecosync_pipeline.positions.page_size import run_page_size
from ecosync_pipeline.positions.verify import verify

logger = logging.getLogger(__name__)

USABLE: frozenset[PositionStatus] = frozenset({"healthy", "calculated"})
Fetchers = Mapping[str, PageFetcher] | Callable[[Store], PageFetcher]


def classify(position: SyncPosition | None, truth: SyncPosition | None) -> PositionStatus:
    """A layer's position for one store compared with the database's (``truth``).

    The one judgement every reader uses: the sync and the restore take a ``healthy`` or
    ``calculated`` position, the status report and the checks show the others.
    """
    db_last = truth.target if truth is not None else None
    if db_last is None:
        return "calculated" if position is None or position.target is None else "ahead"
    if position is None:
        return "missing"
    if position.target is None:
        return "reset"  # page 1 with nothing synced while the database has orders
    if position.target > db_last:
        return "ahead"
    return "stale" if position.target < db_last else "healthy"


class PositionChain(Generic[RedisReadT, BackupReadT, DatabaseReadT]):
    """The three layers of one deployment, composed: a cache, its backup, the truth."""

    def __init__(
        self,
        stores: Sequence[Store],
        redis: PositionLayer[RedisReadT],
        backup: PositionLayer[BackupReadT],
        database: PositionLayer[DatabaseReadT],
    ) -> None:
        self.stores = list(stores)
        self.redis = redis
        self.backup = backup
        self.database = database

    @property
    def layers(self) -> tuple[PositionLayer[LayerRead], ...]:
        """Redis, the backup, the database, in the order they are asked."""
        return (self.redis, self.backup, self.database)

    def snapshot(
        self, stores: Sequence[Store] | None = None, *, backup_when_needed: bool = False
    ) -> Snapshot[RedisReadT, BackupReadT, DatabaseReadT]:
        """Read every layer once for ``stores`` (all configured stores by default).

        ``backup_when_needed``: the JSON backup is read only if something asks for it
        (a sync whose Redis position is usable never does).
        """
        wanted = self.stores if stores is None else list(stores)
        redis = self.redis.read_many(wanted)
        backup: BackupReadT | Callable[[], BackupReadT] = (
            (lambda: self.backup.read_many(wanted))
            if backup_when_needed
            else self.backup.read_many(wanted)
        )
        return Snapshot(redis, backup, self.database.read_many(wanted))

    def get_position(self, store: Store, fetcher: PageFetcher) -> ResolvedPosition:
        """The store's verified position, written back to both caches unless Redis had it;
        ApiError if the API fails verification, StorageError if the database is unread."""
        # The backup file is read only if Redis cannot serve: a thousand stores' syncs
        # would each parse a file of a thousand entries for nothing.
        snapshot = self.snapshot([store], backup_when_needed=True)
        resolved = self.resolve(store, snapshot, fetcher)
        if resolved.source != "redis" or resolved.moved:
            self.save_many([resolved.position], recovery=resolved.source != "redis")
        return resolved

    def save(self, position: SyncPosition) -> SaveResult:
        """Write a position to Redis and the JSON backup, each on its own; never raises."""
        return self.save_many([position])

    def save_many(self, positions: Sequence[SyncPosition], *, recovery: bool = False) -> SaveResult:
        """Write positions to Redis (one MULTI/EXEC), then the backup with Redis's generation."""
        cached: Written = self.redis.write_many(positions, recovery=recovery)
        backed = self.backup.write_many(positions, recovery=recovery, generation=cached.generation)
        return SaveResult(bool(cached), bool(backed), backed.error, len(positions))

    def restore_all(self, fetchers: Fetchers) -> list[RestoreReport]:
        """Restore every store from one snapshot: a failing store is reported, not fatal;
        the verified positions are written in one write per layer."""
        reports = self.verify_all(self.snapshot(), fetchers)
        self.write_restored(reports)
        return reports

    def verify_all(
        self, snapshot: Snapshot[RedisReadT, BackupReadT, DatabaseReadT], fetchers: Fetchers
    ) -> list[RestoreReport]:
        """Per store, resolve from the snapshot and verify; write nothing."""
        return [self._restore_one(store, snapshot, fetchers) for store in self.stores]

    def write_restored(self, reports: Sequence[RestoreReport]) -> SaveResult:
        """Write every verified position to Redis (as a recovery) and to the backup."""
        return self.save_many([r.after for r in reports if r.after is not None], recovery=True)

    @contextmanager
    def coalescing(self) -> Iterator[None]:
        """Every layer gathers its writes for the block (a batch of stores): the backup
        file is written about once a second instead of once a store."""
        with ExitStack() as stack:
            for layer in self.layers:
                stack.enter_context(layer.coalescing())
            yield

    def close(self) -> None:
        """Release what the layers hold open (Redis's connection)."""
        for layer in self.layers:
            layer.close()

    def resolve(
        self,
        store: Store,
        snapshot: Snapshot[RedisReadT, BackupReadT, DatabaseReadT],
        fetcher: PageFetcher,
    ) -> ResolvedPosition:
        """Choose the layer for one store from the snapshot, and verify; write nothing."""
        sid = store.identifier
        truth = snapshot.truth(sid)
        trail: list[LayerOutcome] = []
        for read in _cache_layers(snapshot):
            offered = read.get(sid)
            status = classify(offered, truth)
            if not read.ok or offered is None:
                trail.append(LayerOutcome(read.layer, "unavailable" if not read.ok else "absent"))
                continue
            if status in USABLE:
                return _verified(offered, fetcher, store, read.layer, trail, truth)
            trail.append(LayerOutcome(read.layer, status, f"last order id {offered.target}"))
            db_last = truth.target if truth else None
            logger.warning(
                "store %s: the %s position (page %d, last order id %s) is %s of the database "
                "(last order id %s); it is recomputed from the database",
                *(sid, read.layer, offered.last_page, offered.target, status, db_last),
            )
            break
        fallback = truth or SyncPosition.first_sync(sid, store.name, store.per_page)
        return _verified(fallback, fetcher, store, "database", trail, truth)

    def _restore_one(
        self,
        store: Store,
        snapshot: Snapshot[RedisReadT, BackupReadT, DatabaseReadT],
        fetchers: Fetchers,
    ) -> RestoreReport:
        sid = store.identifier
        before = LayerPositions(
            snapshot.redis.lookup(sid), snapshot.json.get(sid), snapshot.database.get(sid)
        )
        fetcher: PageFetcher | None = None
        try:
            fetcher = fetchers(store) if callable(fetchers) else fetchers.get(sid)
            if fetcher is None:
                raise ConfigError(f"store {sid}: no page fetcher was given for it")
            resolved = self.resolve(store, snapshot, fetcher)
        except Exception as exc:  # one store's failure must not stop the others
            if not isinstance(exc, EcosyncError):
                logger.exception("store %s: position not restored", sid)
            logger.warning("store %s: position not restored: %s", sid, exc)
            return RestoreReport(sid, before, None, None, 0, f"{type(exc).__name__}: {exc}")
        finally:
            close = getattr(fetcher, "close", None)
            if callable(fetchers) and callable(close):
                close()
        return RestoreReport(
            sid, before, resolved.position, resolved.source, resolved.fetches, None, resolved.trail
        )


def _cache_layers(
    snapshot: Snapshot[RedisReadT, BackupReadT, DatabaseReadT],
) -> Iterator[LayerRead]:
    """Redis, then the JSON backup, the latter read only when reached."""
    yield snapshot.redis
    yield snapshot.json


def _verified(
    position: SyncPosition,
    fetcher: PageFetcher,
    store: Store,
    layer: LayerName,
    trail: list[LayerOutcome],
    truth: SyncPosition | None,
) -> ResolvedPosition:
    checked = verify(position, fetcher, run_page_size(store, position, truth))
    trail.append(LayerOutcome(layer, "used", f"page {checked.position.last_page}"))
    if layer != "redis":
        logger.info(
            "store %s: position restored from %s: page %d, last order id %s (%d API calls)",
            *(store.identifier, position.source, checked.position.last_page, position.target),
            checked.fetches,
        )
    return ResolvedPosition(
        checked.position, checked.page, checked.fetches, tuple(trail), moved=checked.moved
    )
