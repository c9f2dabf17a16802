"""One segment of served ids against the stored ids of the same range, and its repair.

The comparison is by id sets, never by counts (DESIGN, invariant 10): a deleted order
still in the table and a skipped one cancel out in any count, not in a set difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy.engine import Connection

from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.mirror.segments import Segment
from ecosync_pipeline.storage import upsert_orders
from ecosync_pipeline.storage.ranges import StoredOrder, flag_deleted, stored_in_range


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
    """What the mirror found and fixed over some segments (sums of their diffs)."""

    pages: int = 0
    checked: int = 0
    missing: int = 0
    fetched: int = 0
    flagged_deleted: int = 0
    updated: int = 0
    low: int | None = None
    high: int | None = None

    def add(self, diff: SegmentDiff, *, fetched: int, flagged: int) -> None:
        """Count one segment's diff, and what was written for it."""
        seg = diff.segment
        self.pages += 1
        self.checked += len(seg.orders)
        self.missing += len(diff.missing) + len(diff.reappeared)
        self.fetched += fetched
        self.flagged_deleted += flagged
        self.updated += len(diff.changed)
        self.low = seg.low if self.low is None else min(self.low, seg.low)
        self.high = seg.high if self.high is None else max(self.high, seg.high)

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def repair(conn: Connection, segment: Segment, *, now: datetime | None = None) -> SegmentDiff:
    """Compare one segment and make the table match it, in the caller's transaction.

    Missing and reappeared orders are upserted from the page itself (no extra call), and
    so are changed ones (every field, not just the status); gone ones are flagged.
    """
    diff = compare(segment, stored_in_range(conn, segment.store, segment.low, segment.high))
    writes = [*diff.missing, *diff.reappeared, *diff.changed]
    if writes:
        upsert_orders(conn, segment.store, writes, seen_at=now)
    if diff.gone:
        flag_deleted(conn, segment.store, diff.gone, at=now)
    return diff
