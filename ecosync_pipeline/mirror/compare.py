"""One segment of served ids against the stored ids of the same range, and its repair.

The comparison is by id sets, never by counts (DESIGN, invariant 10): a deleted order
still in the table and a skipped one cancel out in any count, not in a set difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.mirror.segments import Segment
from ecosync_pipeline.storage.merge import Gone, Served, UpsertCounts, Write, merge_orders
from ecosync_pipeline.storage.pages import OrderReader, settle_ties
from ecosync_pipeline.storage.ranges import StoredOrder, stored_in_range


@dataclass(frozen=True)
class SegmentDiff:
    """What differs between EcoManager and the table over one segment's id range."""

    segment: Segment
    missing: tuple[Order, ...]
    """Served, not stored at all."""
    reappeared: tuple[Order, ...]
    """Served, stored but flagged deleted."""
    changed: tuple[Order, ...]
    """Served and stored, with a field that differs (a status change, ...)."""
    gone: tuple[int, ...]
    """Stored live, no longer served: deleted upstream."""

    @property
    def absent(self) -> list[int]:
        """Ids EcoManager serves that the table does not count as present."""
        return sorted(o.id for o in (*self.missing, *self.reappeared))


def compare(segment: Segment, stored: Mapping[int, StoredOrder]) -> SegmentDiff:
    """The differences over ``segment``'s range, given every stored order in that range."""
    served = {o.id: o for o in segment.orders}
    missing, reappeared, changed = [], [], []
    for order_id, order in served.items():
        row = stored.get(order_id)
        if row is None:
            missing.append(order)
        elif row.deleted:
            reappeared.append(order)
        elif row.differs_from(order, segment.store):
            changed.append(order)
    gone = tuple(sorted(i for i, row in stored.items() if not row.deleted and i not in served))
    return SegmentDiff(segment, tuple(missing), tuple(reappeared), tuple(changed), gone)


@dataclass
class MirrorCounts:
    """What the mirror found and wrote over some segments (sums of their diffs and merges).

    ``missing`` counts the served orders the table did not count as present (found);
    ``fetched``, ``updated``, ``flagged_deleted`` and ``stale`` what the merge rule really
    wrote of them (an order a webhook made newer meanwhile is ``stale``, not ``updated``).
    """

    pages: int = 0
    checked: int = 0
    missing: int = 0
    fetched: int = 0
    reappeared: int = 0
    flagged_deleted: int = 0
    updated: int = 0
    stale: int = 0
    ties: int = 0
    """Served with the stored ``updated_at`` but other content, left for the next read."""
    settled: int = 0
    """Ties settled by asking EcoManager for the order."""
    low: int | None = None
    high: int | None = None

    def add(self, diff: SegmentDiff, written: UpsertCounts) -> None:
        """Count one segment's diff, and what the merge wrote for it."""
        seg = diff.segment
        self.pages += 1
        self.checked += len(seg.orders)
        self.missing += len(diff.missing) + len(diff.reappeared)
        self.merged(written)
        self.low = seg.low if self.low is None else min(self.low, seg.low)
        self.high = seg.high if self.high is None else max(self.high, seg.high)

    def merged(self, written: UpsertCounts) -> None:
        """Count what a merge wrote (a segment's, or the answers that settled its ties)."""
        self.fetched += written.new + written.reappeared
        self.reappeared += written.reappeared
        self.flagged_deleted += written.flagged
        self.updated += written.updated
        self.stale += written.stale
        self.settled += written.settled
        self.ties += len(written.ties)

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def repair(
    conn: Connection, segment: Segment, *, now: datetime | None = None
) -> tuple[SegmentDiff, UpsertCounts]:
    """Compare one segment and make the table match it, in the caller's transaction.

    Missing, reappeared and changed orders are written from the page itself (no extra
    call), and the ids gone are flagged, all through the merge rule: what it refuses
    (older than the table, read before a deletion, a tie) is counted, not written.
    """
    diff = compare(segment, stored_in_range(conn, segment.store, segment.low, segment.high))
    found_gone_at = segment.fetched_at or now or datetime.now(timezone.utc)
    writes: list[Write] = [Served(o) for o in (*diff.missing, *diff.reappeared, *diff.changed)]
    writes += [Gone(order_id, found_gone_at) for order_id in diff.gone]
    written = merge_orders(conn, segment.store, writes, now=now).counts
    return diff, written


def settle(
    engine: Engine, store: StoreId, written: UpsertCounts, reader: OrderReader
) -> UpsertCounts:
    """``written`` with its ties settled by asking EcoManager once for each (pages.settle_ties)."""
    if not written.ties:
        return written
    return replace(written, ties=()) + settle_ties(engine, store, written.ties, reader)
