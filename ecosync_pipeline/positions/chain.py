"""The fallback chain: Redis, then the JSON backup, then the orders database.

    get_position(store, fetcher)
      Redis key        usable? -> verify on the API                       -> use
      JSON entry       usable? -> verify, write back to Redis (+ JSON)    -> use
      orders database  last id + count -> locate on the API, write both   -> use

A layer's position is usable only when its last synced order id equals the database's
(the truth, DESIGN invariant 1). AHEAD of the database (the database was restored from
an older backup) it would skip the gap, so it is never used; BEHIND it (stale), resuming
from it would re-read every page since, while locating the database's own last id costs
a few fetches; either way the database layer decides. Every position is verified on the
API before it is returned, and the page fetched to verify it comes back with it, so the
sync's first page costs nothing more.

This module only composes the layers (redis_layer, json_layer, database_layer) and the
verification (verify); each of those says how it works.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import ConfigError, EcosyncError, PositionError
from ecosync_pipeline.positions.database_layer import DatabaseLayer, position_from_summary
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import PositionSource, SyncPosition
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisLayer, RedisRead, RedisSnapshot
from ecosync_pipeline.positions.verify import Verified, verify
from ecosync_pipeline.storage import StoreSummary

logger = logging.getLogger(__name__)

Verdict = Literal["used", "absent", "unavailable", "ahead", "stale", "reset"]
Fetchers = Mapping[str, PageFetcher] | Callable[[Store], PageFetcher]


@dataclass(frozen=True)
class LayerOutcome:
    """What one layer offered for a store and why it was used or passed over."""

    layer: Literal["redis", "json", "database"]
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class ResolvedPosition:
    """A verified position, the resume page as fetched, the API calls spent and the trail."""

    position: SyncPosition
    page: Page | None
    fetches: int
    trail: tuple[LayerOutcome, ...] = ()
    moved: bool = False
    """Verification found the resume page elsewhere than the position said."""

    @property
    def source(self) -> PositionSource:
        """The layer the position came from."""
        return self.position.source


@dataclass(frozen=True)
class SaveResult:
    """Which layers took a position write (a layer that failed logged a warning)."""

    redis: bool
    json: bool


@dataclass(frozen=True)
class LayerPositions:
    """What each layer held for one store before a restore."""

    redis: RedisRead
    json: SyncPosition | None
    database: SyncPosition | None


@dataclass(frozen=True)
class WriteOutcome:
    """How many verified positions were written, and whether each layer took them."""

    written: int
    redis: bool
    json: bool
    json_error: str | None = None


@dataclass(frozen=True)
class RestoreReport:
    """One store's restore: before (per layer), after, where from, API calls, error."""

    store: str
    before: LayerPositions
    after: SyncPosition | None
    restored_from: PositionSource | None
    api_calls: int
    error: str | None = None
    trail: tuple[LayerOutcome, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """The store now has a verified position."""
        return self.error is None and self.after is not None


def run_page_size(store: Store, position: SyncPosition, summary: StoreSummary | None) -> int:
    """The page size to verify and sync with: ``import_per_page`` during a first import.

    A store with no orders starts a first import; a position taken with the import size
    continues it (a budgeted import of thousands of pages costs a fifth of the calls).
    The sync converts the position to ``per_page`` when the import reaches the end.
    """
    if store.import_per_page <= store.per_page:
        return store.per_page
    importing = (
        summary is None or summary.order_count == 0 or position.per_page == store.import_per_page
    )
    return store.import_per_page if importing else store.per_page


def judge(position: SyncPosition, summary: StoreSummary | None) -> Verdict:
    """Whether a layer's position agrees with the database ("used") or why not."""
    db_last = summary.last_order_id if summary is not None and summary.order_count else None
    target = position.target
    if db_last is None:
        return "used" if target is None else "ahead"
    if target is None:
        return "reset"
    if target > db_last:
        return "ahead"
    return "stale" if target < db_last else "used"


class PositionChain:
    """The three layers of one deployment, composed."""

    def __init__(
        self,
        stores: Sequence[Store],
        redis: RedisLayer,
        backup: JsonBackup,
        database: DatabaseLayer,
    ) -> None:
        self.stores = list(stores)
        self.redis = redis
        self.backup = backup
        self.database = database

    def store(self, identifier: str) -> Store:
        """The configured store with this identifier."""
        for store in self.stores:
            if store.identifier == identifier:
                return store
        raise ConfigError(f"store {identifier} is not configured; add it to the stores file")

    def get_position(self, store: Store | str, fetcher: PageFetcher) -> ResolvedPosition:
        """The store's verified position, from the first layer that has a usable one.

        A position that did not come from Redis (or that verification moved) is written
        back to Redis and the JSON backup. Raises ApiError if verification fails, and
        StorageError if the database cannot be read.
        """
        store = self.store(store) if isinstance(store, str) else store
        summary = self.database.summary(store.identifier)
        resolved = self.resolve(
            store,
            self.redis.read(store.identifier),
            functools.partial(self.backup.read, store.identifier),
            summary,
            fetcher,
        )
        if resolved.source != "redis" or resolved.moved:
            self.redis.write(resolved.position, recovery=resolved.source != "redis")
            self._write_backup([resolved.position])
        return resolved

    def verify(
        self, position: SyncPosition, fetcher: PageFetcher, per_page: int | None = None
    ) -> Verified:
        """Check a position on the API (see positions.verify.verify)."""
        return verify(position, fetcher, per_page)

    def save(self, position: SyncPosition) -> SaveResult:
        """Write a position to Redis and to the JSON backup, each on its own; never raises."""
        redis_ok = self.redis.write(position)
        return SaveResult(redis=redis_ok, json=self._write_backup([position]) is None)

    def restore_all(self, fetchers: Fetchers) -> list[RestoreReport]:
        """Restore and verify every configured store's position in every layer.

        Layers are read once for all stores; a store that fails is reported and does not
        stop the others; Redis is written in one pipeline and the backup in one write.
        Fetchers built by a callable are closed afterwards.
        """
        reports = self.verify_all(
            self.redis.snapshot(s.identifier for s in self.stores),
            self.read_backup(),
            self.database.summaries(),
            fetchers,
        )
        self.write_restored(reports)
        return reports

    def verify_all(
        self,
        redis: RedisSnapshot,
        backup: Mapping[str, SyncPosition],
        summaries: Mapping[str, StoreSummary],
        fetchers: Fetchers,
    ) -> list[RestoreReport]:
        """Per store, choose the layer from what the layers held and verify it; write nothing.

        A store that fails (API down, token unset, ...) gets a report with its error and
        does not stop the others. Fetchers built by a callable are closed afterwards.
        """
        reports: list[RestoreReport] = []
        for store in self.stores:
            sid = store.identifier
            before = LayerPositions(
                redis=redis.get(sid),
                json=backup.get(sid),
                database=position_from_summary(store, summaries.get(sid)),
            )
            try:
                fetcher = _fetcher_for(store, fetchers)
                try:
                    resolved = self.resolve(
                        store, before.redis, before.json, summaries.get(sid), fetcher
                    )
                finally:
                    close = getattr(fetcher, "close", None)
                    if callable(fetchers) and callable(close):
                        close()
            except Exception as exc:  # one store's failure must not stop the others
                if isinstance(exc, EcosyncError):
                    logger.warning("store %s: position not restored: %s", sid, exc)
                else:
                    logger.exception("store %s: position not restored", sid)
                reports.append(
                    RestoreReport(sid, before, None, None, 0, f"{type(exc).__name__}: {exc}")
                )
                continue
            reports.append(
                RestoreReport(
                    sid,
                    before,
                    resolved.position,
                    resolved.source,
                    resolved.fetches,
                    None,
                    resolved.trail,
                )
            )
        return reports

    def write_restored(self, reports: Sequence[RestoreReport]) -> WriteOutcome:
        """Write every verified position to Redis (one MULTI/EXEC, as a recovery) and JSON."""
        positions = [r.after for r in reports if r.after is not None]
        redis_ok = self.redis.write_many(positions, recovery=True)
        json_error = self._write_backup(positions)
        return WriteOutcome(len(positions), redis_ok, json_error is None, json_error)

    def read_backup(self) -> dict[str, SyncPosition]:
        """Every entry of the JSON backup; {} (with a warning) when it cannot be read."""
        try:
            return self.backup.read_all()
        except PositionError as exc:
            logger.warning("%s", exc)
            return {}

    def close(self) -> None:
        """Release the Redis connection."""
        self.redis.close()

    # -- the chain itself ----------------------------------------------------------------

    def resolve(
        self,
        store: Store,
        cached: RedisRead,
        backup: SyncPosition | None | Callable[[], SyncPosition | None],
        summary: StoreSummary | None,
        fetcher: PageFetcher,
    ) -> ResolvedPosition:
        """Choose the layer for one store from what the layers hold, and verify; write nothing.

        ``cached`` is the Redis read, ``backup`` the JSON entry (or a function reading it,
        called only when Redis has nothing usable), ``summary`` the database's truth.
        get_position and restore_all both decide through here.
        """
        trail: list[LayerOutcome] = []
        read_backup = backup if callable(backup) else functools.partial(_held, backup)
        layers: tuple[tuple[Literal["redis", "json"], Callable[[], RedisRead]], ...] = (
            ("redis", functools.partial(_held, cached)),
            ("json", read_backup),
        )
        for layer, read in layers:
            try:
                offered = read()
            except PositionError as exc:  # the backup cannot be read: the database decides
                logger.warning("store %s: %s", store.identifier, exc)
                trail.append(LayerOutcome(layer, "unavailable", str(exc)))
                continue
            if offered is None or offered is UNAVAILABLE:
                trail.append(LayerOutcome(layer, "absent" if offered is None else "unavailable"))
                continue
            assert isinstance(offered, SyncPosition)
            verdict = judge(offered, summary)
            if verdict == "used":
                return _verified(offered, fetcher, store, layer, trail, summary)
            trail.append(LayerOutcome(layer, verdict, _disagreement(offered, summary)))
            logger.warning(
                "store %s: the %s position (page %d, last order id %s) is %s of the "
                "database; it is recomputed from the database",
                store.identifier,
                layer,
                offered.last_page,
                offered.target,
                verdict,
            )
            break
        return _verified(
            position_from_summary(store, summary), fetcher, store, "database", trail, summary
        )

    def _write_backup(self, positions: list[SyncPosition]) -> str | None:
        """Write positions to the JSON backup; the error (logged) when it failed."""
        try:
            self.backup.write_many(positions)
        except PositionError as exc:
            logger.warning("%s", exc)
            return str(exc)
        return None


def _verified(
    position: SyncPosition,
    fetcher: PageFetcher,
    store: Store,
    layer: Literal["redis", "json", "database"],
    trail: list[LayerOutcome],
    summary: StoreSummary | None,
) -> ResolvedPosition:
    checked = verify(position, fetcher, run_page_size(store, position, summary))
    trail.append(LayerOutcome(layer, "used", f"page {checked.position.last_page}"))
    if layer != "redis":
        logger.info(
            "store %s: position restored from %s: page %d, last order id %s "
            "(%d API calls to verify it)",
            store.identifier,
            position.source,
            checked.position.last_page,
            position.target,
            checked.fetches,
        )
    return ResolvedPosition(
        checked.position, checked.page, checked.fetches, tuple(trail), moved=checked.moved
    )


def _held(value: RedisRead) -> RedisRead:
    return value


def _disagreement(position: SyncPosition, summary: StoreSummary | None) -> str:
    db_last = summary.last_order_id if summary is not None else None
    return f"last order id {position.target} vs {db_last} in the database"


def _fetcher_for(store: Store, fetchers: Fetchers) -> PageFetcher:
    if callable(fetchers):
        return fetchers(store)
    try:
        return fetchers[store.identifier]
    except KeyError:
        raise ConfigError(f"store {store.identifier}: no page fetcher was given for it") from None
