"""The recovery of every store's position, step by step, for a job that shows each step.

``PositionChain.restore_all`` does the whole restore in one call. The recovery job runs
it as separate steps so each one is visible (and retried) on its own; together they make
the same chain.Snapshot that restore_all reads:

    detect                        Redis once (keys, sentinel, run_id) and the loss it shows
    chain.backup.read_many        every store's entry in the JSON backup
    chain.database.read_many      every store's last order id and count, and positions
    PositionChain.verify_all      per store, the chain's choice of layer, verified on the API
    PositionChain.write_restored  the verified positions into Redis and the backup

``count_served_through`` audits a store after a sync: how many orders the API serves up
to the last synced id, which must equal the number the database holds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.locator import locate_resume_page, served_size
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.positions.factory import Chain
from ecosync_pipeline.positions.loss import LossReport
from ecosync_pipeline.positions.loss import detect as detect_loss
from ecosync_pipeline.positions.model import PositionSource, SyncPosition, utc_now
from ecosync_pipeline.positions.outcomes import RestoreReport
from ecosync_pipeline.positions.redis_layer import RedisSnapshot
from ecosync_pipeline.storage import StoreSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """What Redis held at the start of a recovery, the loss it shows, and when it was read."""

    loss: LossReport
    redis: RedisSnapshot
    seen_at: datetime = field(default_factory=utc_now)


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


def detect(chain: Chain, *, cursor: str | None = None) -> Detection:
    """Read Redis once and name the loss, judged against the orders database if needed."""
    snapshot = chain.redis.read_many(chain.stores)
    ids = [s.identifier for s in chain.stores]

    def summaries() -> Mapping[str, StoreSummary] | None:
        read = chain.database.read_many(chain.stores)
        return None if read.failure else read.summaries

    loss = detect_loss(
        snapshot,
        ids,
        cursor=cursor,
        summaries=summaries,
        backup_generation=lambda: chain.backup.read_many([]).generation,
    )
    return Detection(loss=loss, redis=snapshot)


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
    the count is ``(page - 1)`` pages at the size the server serves (which may be below
    ``per_page``: the contract sets only the maximum) plus the ids up to the target on
    that page: exact, for the few fetches the locator needs (one when the hint is right,
    one more without ``meta`` when the server serves fewer than asked).
    """
    if target is None:
        return ServedCount(store.identifier, None, 1, 0, 0)
    asked = store.per_page
    counting = _CountingFetcher(fetcher)
    located = locate_resume_page(
        counting, target, hint, asked, resized=lambda size: max(1, hint * asked // size)
    )
    page = located.page_data
    # The locator may have learned the size already: no second probe for it.
    smaller = located.served_size or served_size(counting, page, asked, probe=True)
    size = asked if smaller is None else smaller
    on_page = sum(1 for order_id in page.ids if order_id <= target)
    served = (located.page - 1) * size + on_page
    return ServedCount(store.identifier, target, located.page, served, counting.fetches)


class _CountingFetcher:
    """Counts the fetches of a count, whoever makes them (the locator, the size probe)."""

    def __init__(self, fetcher: PageFetcher) -> None:
        self.fetcher = fetcher
        self.fetches = 0

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        self.fetches += 1
        return self.fetcher.fetch_page(page, per_page)
