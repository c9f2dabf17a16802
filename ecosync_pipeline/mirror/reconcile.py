"""The reconciliation: a budgeted sweep of a store's whole history, newest pages first.

A sweep starts at the page holding the store's highest synced id and reads down to page
1 at 100 orders a page (see reader.py for why downwards), repairing each segment as it
goes: missing orders upserted, orders gone upstream flagged deleted, changed ones
updated. A run spends at most its share of the store's daily call budget and stops;
the sweep's cursor (the lowest id covered so far and its page) is committed with each
segment's repairs, so the next run carries on exactly there and a crash loses nothing
but the page in flight. When page 1 is done the sweep is complete and the next run
starts a new one from the top.

Cost: a sweep is one call per 100 orders, plus the locator's calls to find the top
(one when the table's count is right), plus one call per later run to find its place
again (the boundary page is re-read, since orders may have moved down meanwhile).
Memory is one page and its stored rows: flat in the history's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.mirror.compare import MirrorCounts, repair
from ecosync_pipeline.mirror.segments import PER_PAGE, Segment, descend
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.storage import ensure_store, store_lock, store_summary
from ecosync_pipeline.storage.locks import StoreLease
from ecosync_pipeline.storage.pages import transaction
from ecosync_pipeline.storage.store_state import read_state, write_state

logger = logging.getLogger(__name__)

STATE = "reconcile"


@dataclass
class SweepState:
    """The reconciliation's cursor and its daily call count, as stored per store."""

    sweep: int = 0
    top: int | None = None
    floor: int | None = None
    """The lowest id covered by the sweep in progress (None: the next run starts one)."""
    page: int | None = None
    """The page that ``floor`` was the first id of, the next run's hint."""
    pages: int = 0
    completed: int = 0
    last_completed_at: str | None = None
    day: str | None = None
    calls_today: int = 0
    found: dict[str, int] = field(default_factory=dict)
    """What the sweep in progress found so far (missing, flagged_deleted, updated)."""

    @classmethod
    def load(cls, value: dict[str, Any] | None) -> SweepState:
        known = {k: v for k, v in (value or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def calls_left_today(self, today: date, per_day: int) -> int:
        used = self.calls_today if self.day == today.isoformat() else 0
        return max(0, per_day - used)


@dataclass(frozen=True)
class ReconcileResult:
    """What one run of a store's reconciliation read, found and fixed."""

    store: str
    counts: MirrorCounts
    api_calls: int
    sweep: int
    sweep_complete: bool
    sweep_pages: int
    calls_left_today: int
    seconds: float

    @property
    def range_checked(self) -> str:
        c = self.counts
        if c.low is None or c.high is None:
            return "-"
        return f"{c.low}..{c.high}"


def _today(now: Callable[[], datetime]) -> date:
    return now().astimezone(timezone.utc).date()


def reconcile_store(
    store: Store,
    *,
    client: EcoManagerClient,
    engine: Engine,
    max_calls: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> ReconcileResult:
    """Carry the store's sweep on by at most ``max_calls`` calls (and its daily budget).

    Holds the store's lock (it writes orders, as a sync does). Raises StoreLocked,
    ApiError, MirrorRefused or StorageError; what was committed before stays committed.
    """
    started = datetime.now(timezone.utc)
    calls_before = client.stats.total
    counts = MirrorCounts()
    with store_lock(engine, store.identifier) as lease:
        with transaction(engine, f"store {store.identifier}: registering the store") as conn:
            ensure_store(conn, store.identifier, store.name)
        state = SweepState.load(read_state(engine, store.identifier, STATE))
        today = _today(now)
        if state.day != today.isoformat():
            state.day, state.calls_today = today.isoformat(), 0
        allowed = state.calls_left_today(today, store.reconcile_calls_per_day)
        if max_calls is not None:
            allowed = min(allowed, max_calls)
        complete = False
        if allowed > 0:
            complete = _run(store, client, engine, lease, state, counts, allowed, calls_before)
    calls = client.stats.total - calls_before
    result = ReconcileResult(
        store=store.identifier,
        counts=counts,
        api_calls=calls,
        sweep=state.sweep,
        sweep_complete=complete,
        sweep_pages=state.pages,
        calls_left_today=state.calls_left_today(today, store.reconcile_calls_per_day),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3),
    )
    logger.info(
        "store %s: reconciled ids %s in %d calls: %d missing, %d flagged deleted, %d updated%s",
        store.identifier,
        result.range_checked,
        calls,
        counts.missing,
        counts.flagged_deleted,
        counts.updated,
        f" (sweep {state.sweep} complete)" if complete else "",
    )
    return result


def _start(store: Store, engine: Engine, state: SweepState) -> tuple[int, int, int] | None:
    """(target, high, hint) of this run's first page; None when there is nothing to read."""
    if state.floor is not None and state.floor > 0:
        hint = state.page or 1
        return state.floor, state.floor - 1, hint
    summary = store_summary(engine, store.identifier)
    if summary.last_order_id is None:
        return None
    state.sweep += 1
    state.top, state.floor, state.page, state.pages, state.found = (
        summary.last_order_id,
        None,
        None,
        0,
        {},
    )
    top = summary.last_order_id
    return top, top, page_hint(summary.order_count, PER_PAGE)


def _run(
    store: Store,
    client: EcoManagerClient,
    engine: Engine,
    lease: StoreLease,
    state: SweepState,
    counts: MirrorCounts,
    allowed: int,
    calls_before: int,
) -> bool:
    """Read and repair segments within ``allowed`` calls; True when the sweep completed."""
    start = _start(store, engine, state)
    if start is None:
        return False
    target, high, hint = start
    committed = calls_before

    def calls_left() -> bool:
        return client.stats.total - calls_before < allowed

    for segment in descend(
        client, store.identifier, target=target, high=high, hint=hint, calls_left=calls_left
    ):
        spent = client.stats.total - committed
        committed = client.stats.total
        done = _commit(engine, lease, segment, state, counts, spent)
        if done:
            return True
    return False


def _commit(
    engine: Engine,
    lease: StoreLease,
    segment: Segment,
    state: SweepState,
    counts: MirrorCounts,
    spent: int,
) -> bool:
    """Repair one segment and move the cursor past it, in one transaction of this lease."""
    store = segment.store
    with transaction(engine, f"store {store}: reconciling page {segment.page}") as conn:
        lease.verify(conn)
        diff = repair(conn, segment)
        fetched = len(diff.missing) + len(diff.reappeared)
        counts.add(diff, fetched=fetched, flagged=len(diff.gone))
        state.calls_today += spent
        state.pages += 1
        for key, n in (
            ("missing", fetched),
            ("flagged_deleted", len(diff.gone)),
            ("updated", len(diff.changed)),
        ):
            state.found[key] = state.found.get(key, 0) + n
        done = segment.page == 1
        if done:
            state.floor, state.page = None, None
            state.completed += 1
            state.last_completed_at = datetime.now(timezone.utc).isoformat()
        else:
            state.floor, state.page = segment.low, segment.page
        write_state(conn, store, STATE, state.as_dict())
    return done
