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
again (the boundary page is re-read, since orders may have moved down meanwhile), plus
one call per tie to settle. Every call counts against ``--max-calls`` and the daily
share, the locator's included: the client refuses the call past the cap
(CallCapReached), and the calls spent are recorded even when nothing was committed.
Memory is one page and its stored rows: flat in the history's size.

A reconciliation never takes the sync's lock: its writes go through the merge rule, one
page transaction at a time, so a sync run meanwhile waits at most for one page. Two
reconciliations of a store do not run at once (``repair_lock``), and each segment's
transaction checks that the sweep's cursor is still the one this run last wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import CallCapReached, StorageError, StoreLockLost
from ecosync_pipeline.mirror.compare import MirrorCounts, repair, settle
from ecosync_pipeline.mirror.segments import PER_PAGE, Segment, descend
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.storage import ensure_store, store_summary
from ecosync_pipeline.storage.locks import repair_lock
from ecosync_pipeline.storage.orders import _storage_error
from ecosync_pipeline.storage.pages import transaction
from ecosync_pipeline.storage.schema import store_state
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
    revision: int = 0
    """Raised by every write: a run finding another value knows another run moved it."""

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

    Works beside the store's sync (see the module's docstring). Raises StoreLocked when
    another reconciliation of the store runs, ApiError, MirrorRefused or StorageError;
    what was committed before stays committed.
    """
    started = datetime.now(timezone.utc)
    counts = MirrorCounts()
    sid = store.identifier
    with repair_lock(engine, sid, "reconciliation"):
        with transaction(engine, f"store {sid}: registering the store") as conn:
            ensure_store(conn, sid, store.name)
        state = SweepState.load(read_state(engine, sid, STATE))
        today = _today(now)
        if state.day != today.isoformat():
            state.day, state.calls_today = today.isoformat(), 0
        allowed = state.calls_left_today(today, store.reconcile_calls_per_day)
        if max_calls is not None:
            allowed = min(allowed, max_calls)
        sweep = _Sweep(store, client, engine, state, counts)
        complete = False
        if allowed > 0:
            try:
                with client.call_cap(allowed):
                    complete = sweep.run(allowed)
            except CallCapReached as exc:
                logger.info("%s", exc)
            finally:
                sweep.record_calls()
    result = ReconcileResult(
        store=sid,
        counts=counts,
        api_calls=sweep.calls,
        sweep=state.sweep,
        sweep_complete=complete,
        sweep_pages=state.pages,
        calls_left_today=state.calls_left_today(today, store.reconcile_calls_per_day),
        seconds=round((datetime.now(timezone.utc) - started).total_seconds(), 3),
    )
    logger.info(
        "store %s: reconciled ids %s in %d calls: %d missing, %d flagged deleted, %d updated%s",
        sid,
        result.range_checked,
        sweep.calls,
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


class _Sweep:
    """One run of a store's sweep: its segments committed, and every call it made recorded."""

    def __init__(
        self,
        store: Store,
        client: EcoManagerClient,
        engine: Engine,
        state: SweepState,
        counts: MirrorCounts,
    ) -> None:
        self.store = store
        self.client = client
        self.engine = engine
        self.state = state
        self.counts = counts
        self.calls_before = client.stats.total
        self.recorded = self.calls_before
        """Calls up to this count are in ``state.calls_today`` as committed."""

    @property
    def calls(self) -> int:
        return self.client.stats.total - self.calls_before

    def run(self, allowed: int) -> bool:
        """Read and repair segments within ``allowed`` calls; True when the sweep completed."""
        start = _start(self.store, self.engine, self.state)
        if start is None:
            return False
        target, high, hint = start
        for segment in descend(
            self.client,
            self.store.identifier,
            target=target,
            high=high,
            hint=hint,
            calls_left=lambda: self.calls < allowed,
        ):
            if self._commit(segment):
                return True
        return False

    def _commit(self, segment: Segment) -> bool:
        """Repair one segment and move the cursor past it, in one transaction; then settle
        its ties (their calls are recorded with the next segment or at the end)."""
        state, store = self.state, segment.store
        with transaction(self.engine, f"store {store}: reconciling page {segment.page}") as conn:
            diff, written = repair(conn, segment)
            done = segment.page == 1
            for key, n in (
                ("missing", written.new + written.reappeared),
                ("flagged_deleted", written.flagged),
                ("updated", written.updated),
            ):
                state.found[key] = state.found.get(key, 0) + n
            state.pages += 1
            if done:
                state.floor, state.page = None, None
                state.completed += 1
                state.last_completed_at = datetime.now(timezone.utc).isoformat()
            else:
                state.floor, state.page = segment.low, segment.page
            self._write_state(conn)
        self.counts.add(diff, settle(self.engine, store, written, self.client))
        return done

    def _write_state(self, conn: Connection) -> None:
        """Write the sweep's state with the calls spent so far, if no other run moved it."""
        state, store = self.state, self.store.identifier
        stmt = (
            select(store_state.c.value)
            .where(store_state.c.store == store, store_state.c.name == STATE)
            .with_for_update()
        )
        try:
            stored = conn.execute(stmt).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise _storage_error(exc, f"store {store}: reading its reconciliation") from exc
        current = int(stored.get("revision", 0)) if isinstance(stored, dict) else 0
        if current != state.revision:
            raise StoreLockLost(
                store,
                f"another reconciliation moved the sweep on (revision {current}, this "
                f"run's {state.revision})",
                what="reconciliation",
            )
        spent = self.client.stats.total
        state.calls_today += spent - self.recorded
        state.revision += 1
        write_state(conn, store, STATE, state.as_dict())
        self.recorded = spent

    def record_calls(self) -> None:
        """Record the calls made since the last commit (the locator's, the settling ones)."""
        if self.client.stats.total == self.recorded:
            return
        store = self.store.identifier
        try:
            with transaction(self.engine, f"store {store}: recording its reconcile calls") as conn:
                self._write_state(conn)
        except (StorageError, StoreLockLost) as exc:
            logger.warning(
                "store %s: the reconciliation's last %d calls could not be recorded (%s)",
                store,
                self.client.stats.total - self.recorded,
                exc,
            )
