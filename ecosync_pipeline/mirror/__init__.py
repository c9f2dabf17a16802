"""The mirror of EcoManager: id sets compared by range, newest page first.

Three mechanisms keep the orders table faithful (DESIGN, invariant 10), each on the same
downward reader (reader.py) and segment repair (compare.py):

- reconcile.py: a budgeted sweep of the whole history, carried from run to run;
- freshness.py: the open orders re-read until their state is final;
- completeness.py: a read-only audit of the window the last sync read.
"""

from __future__ import annotations

from ecosync_pipeline.mirror.compare import MirrorCounts, SegmentDiff, compare, repair
from ecosync_pipeline.mirror.completeness import WindowAudit, audit_window
from ecosync_pipeline.mirror.freshness import FreshnessResult, refresh_statuses
from ecosync_pipeline.mirror.reconcile import ReconcileResult, SweepState, reconcile_store
from ecosync_pipeline.mirror.segments import PER_PAGE, Segment, descend

__all__ = [
    "PER_PAGE",
    "FreshnessResult",
    "MirrorCounts",
    "ReconcileResult",
    "Segment",
    "SegmentDiff",
    "SweepState",
    "WindowAudit",
    "audit_window",
    "compare",
    "descend",
    "reconcile_store",
    "refresh_statuses",
    "repair",
]
