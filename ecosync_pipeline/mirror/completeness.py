"""The completeness audit: id sets over the window the last sync read, compared read-only.

The window is the ids from the store's frontier before the last run that moved it to
the frontier after it (the whole store after a first import), as the sync records it;
nothing above the frontier is ever claimed complete, whatever a webhook delivery wrote
there (DESIGN, invariant 14). The audit reads that window newest page first
(segments.py) and compares each segment's ids with the table's: an id served and not
stored live is missing, whatever the counts say. A newest-first read refused because
the server ended it early is reported as such: nothing of it is complete. The audit
writes nothing: the reconciliation repairs what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.mirror.compare import compare
from ecosync_pipeline.mirror.segments import PER_PAGE, descend
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.storage.ranges import (
    id_ranges,
    live_count_below,
    stored_in_range,
)
from ecosync_pipeline.storage.store_state import SyncWindow, read_cursor_read, read_frontier

DEFAULT_MAX_CALLS = 200
"""An audit reads at most this many pages by default (20,000 orders); the rest of a long
window (a first import) is reported as not checked, and left to the reconciliation."""


@dataclass
class WindowAudit:
    """What the audit found over the window (or the part of it its budget covered)."""

    store: str
    window: SyncWindow
    covered_low: int | None = None
    pages: int = 0
    api_calls: int = 0
    served: int = 0
    missing: int = 0
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)
    gone_unflagged: int = 0
    changed: int = 0
    frontier: int | None = None
    """The store's frontier when audited: the window never reaches above it."""
    refused: str | None = None
    """Why the store's last newest-first read was refused (its server ended it early)."""

    @property
    def complete(self) -> bool:
        """Every id of the window was compared."""
        return self.covered_low is not None and self.covered_low <= self.window.low

    @property
    def proven_complete(self) -> bool:
        """The ids prove that nothing of the window is missing."""
        return self.complete and self.missing == 0 and self.refused is None

    def ranges_text(self, limit: int = 5) -> str:
        shown = [f"{a}" if a == b else f"{a}..{b}" for a, b in self.missing_ranges[:limit]]
        more = len(self.missing_ranges) - limit
        return ", ".join(shown) + (f" and {more} more ranges" if more > 0 else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "window_low": self.window.low,
            "window_high": self.window.high,
            "covered_low": self.covered_low,
            "complete": self.complete,
            "pages": self.pages,
            "api_calls": self.api_calls,
            "served": self.served,
            "missing": self.missing,
            "missing_ranges": [list(r) for r in self.missing_ranges],
            "gone_unflagged": self.gone_unflagged,
            "changed": self.changed,
            "frontier": self.frontier,
            "refused": self.refused,
        }


def audit_window(
    fetcher: PageFetcher,
    engine: Engine | Connection,
    store: StoreId,
    window: SyncWindow,
    *,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> WindowAudit:
    """Compare the served ids with the stored ones over ``window``, newest page first.

    The window is cut at the store's frontier: ids above it are not claimed complete, so
    they are not audited (with no frontier, nothing is).
    """
    frontier = read_frontier(engine, store)
    under_way = read_cursor_read(engine, store)
    refused = under_way.refused if under_way is not None else None
    if frontier is None or frontier < window.low:
        return WindowAudit(store=store, window=window, frontier=frontier, refused=refused)
    window = SyncWindow(window.low, min(window.high, frontier), window.at)
    audit = WindowAudit(store=store, window=window, frontier=frontier, refused=refused)
    hint = page_hint(live_count_below(engine, store, window.high + 1), PER_PAGE)
    fetches = 0

    class Counting:
        def fetch_page(self, page: int, per_page: int | None = None) -> Any:
            nonlocal fetches
            fetches += 1
            return fetcher.fetch_page(page, per_page)

    for segment in descend(
        Counting(),
        store,
        target=window.high,
        high=window.high,
        hint=hint,
        floor=window.low,
        calls_left=lambda: fetches < max_calls,
    ):
        diff = compare(segment, stored_in_range(engine, store, segment.low, segment.high))
        audit.pages += 1
        audit.covered_low = segment.low
        audit.served += len(segment.orders)
        absent = diff.absent
        audit.missing += len(absent)
        audit.missing_ranges.extend(id_ranges(absent, segment.ids))
        audit.gone_unflagged += len(diff.gone)
        audit.changed += len(diff.changed)
    audit.api_calls = fetches
    audit.missing_ranges.sort()
    return audit
