"""The recovery of every store's position, step by step, for a job that shows each step.

``PositionChain.restore_all`` does the whole restore in one call. The recovery job runs
it as separate steps so each one is visible (and retried) on its own:

    detect                       one probe of Redis (keys, sentinel, run_id) and the loss
    PositionChain.read_backup    every store's entry in the JSON backup
    from_database                every store's last order id and count, and positions
    PositionChain.verify_all     per store, the chain's choice of layer, verified on the API
    PositionChain.write_restored the verified positions into Redis and the backup

The job calls the very methods ``restore_all`` is made of, so the two cannot disagree
about which layer wins.

``watch`` is the sensor's look at Redis: the core's probe and loss detection, plus the
reset keys (a store's key back at page 1 with nothing synced while the database holds
its orders: the original system's failure), which a probe alone cannot tell from a
new store.

``count_served_through`` audits a store after a sync: how many orders the API serves up
to the last synced id, which must equal the number the database holds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.locator import locate_resume_page
from ecosync_pipeline.positions.chain import (
    PositionChain,
    RestoreReport,
)
from ecosync_pipeline.positions.health import LossReport, detect_cache_loss, probe
from ecosync_pipeline.positions.model import PositionSource, SyncPosition
from ecosync_pipeline.positions.redis_layer import RedisLayer, RedisSnapshot
from ecosync_pipeline.storage import StoreSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """What Redis held at the start of a recovery, and the loss it shows."""

    loss: LossReport
    redis: RedisSnapshot


@dataclass(frozen=True)
class DatabasePositions:
    """Every store's last order id and count, and the (unverified) position they give."""

    summaries: Mapping[str, StoreSummary]
    positions: Mapping[str, SyncPosition]


@dataclass(frozen=True)
class RecoveryCounts:
    """How the stores of a recovery ended: per source, already healthy, failed."""

    from_redis: int
    from_json: int
    from_database: int
    calculated: int
    already_healthy: int
    failed: int

    @property
    def recovered(self) -> int:
        """Stores that did not come from Redis but were restored from a lower layer."""
        return self.from_json + self.from_database + self.calculated


def detect(chain: PositionChain, *, cursor: str | None = None) -> Detection:
    """Probe Redis once and classify the loss, judged against the orders database."""
    snapshot = probe(chain.redis, chain.stores)
    summaries = chain.database.summaries()
    loss = detect_cache_loss(
        chain.redis, chain.stores, cursor=cursor, summaries=summaries, snapshot=snapshot
    )
    return Detection(loss=loss, redis=snapshot)


@dataclass(frozen=True)
class Watch:
    """One look at Redis for the sensor: the loss (if any), reset keys, and the probe."""

    loss: LossReport
    resets: tuple[str, ...]
    redis: RedisSnapshot
    consulted_database: bool


def watch(
    redis: RedisLayer,
    stores: Iterable[str],
    *,
    cursor: str | None,
    summaries: Callable[[], Mapping[str, StoreSummary] | None],
) -> Watch:
    """Probe Redis (one round trip) and name the loss; ask the database only when needed.

    ``summaries`` is called (at most once) only when the probe alone cannot decide: no
    sentinel was ever seen (a flush before the first look, or a new Redis?), or a key
    holds a position with nothing synced (a reset, or a store without orders?). It may
    return None when the database cannot answer; the probe's own verdict then stands.
    A reset becomes a loss event named after the sentinel's generation and epoch and
    the stores, so the recovery's write (which bumps the epoch) ends it.
    """
    ids = list(stores)
    snapshot = probe(redis, ids)
    blank = sorted(s for s, p in snapshot.positions.items() if p.target is None)
    wanted = snapshot.available and ((cursor is None and snapshot.sentinel is None) or bool(blank))
    known = summaries() if wanted else None
    loss = detect_cache_loss(redis, ids, cursor=cursor, summaries=known, snapshot=snapshot)
    resets: tuple[str, ...] = ()
    if known is not None:
        resets = tuple(s for s in blank if s in known and known[s].order_count > 0)
    if resets and loss.event_id is None and snapshot.sentinel is not None:
        sentinel = snapshot.sentinel
        digest = hashlib.sha256(",".join(resets).encode()).hexdigest()[:12]
        loss = replace(loss, event_id=f"reset:{sentinel.generation}:{sentinel.epoch}:{digest}")
    return Watch(loss=loss, resets=resets, redis=snapshot, consulted_database=wanted)


def from_database(chain: PositionChain) -> DatabasePositions:
    """Every store's last order id and count (one query) and the positions they give."""
    summaries = chain.database.summaries()
    return DatabasePositions(summaries, chain.database.read_all(chain.stores, summaries))


def already_healthy(report: RestoreReport) -> bool:
    """The store's Redis position was right: used as it was, on the page it named."""
    cached = report.before.redis
    return (
        report.ok
        and report.restored_from == "redis"
        and isinstance(cached, SyncPosition)
        and report.after is not None
        and report.after.last_page == cached.last_page
    )


def count_sources(reports: Sequence[RestoreReport]) -> RecoveryCounts:
    """Tally the reports by the layer each position came from."""

    def n(source: PositionSource) -> int:
        return sum(1 for r in reports if r.ok and r.restored_from == source)

    return RecoveryCounts(
        from_redis=n("redis"),
        from_json=n("json"),
        from_database=n("database"),
        calculated=n("calculated"),
        already_healthy=sum(1 for r in reports if already_healthy(r)),
        failed=sum(1 for r in reports if not r.ok),
    )


@dataclass(frozen=True)
class ServedCount:
    """How many orders the API serves up to and including a store's last synced id."""

    store: str
    target: int | None
    page: int
    served: int
    fetches: int


def count_served_through(
    fetcher: PageFetcher, store: Store, target: int | None, hint: int
) -> ServedCount:
    """Orders the API serves with an id up to ``target``, located from the page ``hint``.

    Every page before the resume page is full and holds only ids below the target, so
    the count is ``(page - 1) * per_page`` plus the ids up to the target on that page:
    exact, for the few fetches the locator needs (one when the hint is right).
    """
    if target is None:
        return ServedCount(store.identifier, None, 1, 0, 0)
    located = locate_resume_page(fetcher, target, hint, store.per_page)
    on_page = sum(1 for order_id in located.page_data.ids if order_id <= target)
    served = (located.page - 1) * store.per_page + on_page
    return ServedCount(store.identifier, target, located.page, served, located.fetches)
