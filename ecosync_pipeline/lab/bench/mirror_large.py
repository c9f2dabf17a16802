"""The NATUR-sized part of `ecosync bench mirror`: full reconcile, deletions, statuses, cursor."""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ecosync_pipeline.lab.bench.mirror import (
    CURSOR_KS,
    OLD_DELETIONS,
    STATUS_ARRIVALS,
    STATUS_CHANGES,
    Progress,
    Row,
)
from ecosync_pipeline.lab.bench.mirror_world import MirrorWorld, audit_table
from ecosync_pipeline.mirror import reconcile_store, refresh_statuses
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import store_summaries, store_summary
from ecosync_pipeline.storage.ranges import stored_in_range


def _traced(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``, its seconds, and the peak of Python allocations during it (MB)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, time.perf_counter() - started, peak / 1e6


def _reconcile(rt: Runtime, store_id: str) -> Any:
    store = rt.store(store_id)
    with rt.client(store) as client:
        return reconcile_store(store, client=client, engine=rt.engine)


def _row(scenario: str, mode: str, **values: Any) -> Row:
    base: dict[str, Any] = {
        "runs": 1,
        "changes": 0,
        "missing": 0,
        "duplicated": 0,
        "flagged": 0,
        "wrongly_flagged": 0,
        "stale": "-",
        "check": "-",
        "calls": "-",
        "bound": "-",
        "seconds": 0.0,
    }
    base.update(values)
    return Row(scenario=scenario, mode=mode, **base)


def full_reconcile_rows(world: MirrorWorld, big: str, tenth: str) -> list[Row]:
    """A full reconcile of an unchanged store, and of one a tenth its size (memory)."""
    rows = []
    with world.runtime() as rt:
        for store_id in (tenth, big):
            result, seconds, peak = _traced(lambda s=store_id: _reconcile(rt, s))
            served = world.simulator.count(store_id)
            audit = audit_table(rt.engine, world.simulator, store_id)
            rows.append(
                _row(
                    f"full reconcile, {served:,} orders unchanged",
                    "pages + reconcile",
                    missing=audit.missing,
                    duplicated=audit.duplicated,
                    flagged=audit.flagged,
                    wrongly_flagged=audit.wrongly_flagged,
                    calls=result.api_calls,
                    bound=f"<= {math.ceil(served / 100) + 2} (n/100 + 2)",
                    seconds=round(seconds, 1),
                    note=f"peak {peak:.2f} MB; sweep complete: {result.sweep_complete}",
                )
            )
    return rows


def deletion_rows(world: MirrorWorld, store_id: str) -> list[Row]:
    """500 old orders deleted upstream: what the sync leaves, what a full reconcile flags."""
    sim = world.simulator
    last = sim.last_id(store_id) or 0
    gone = set(sim.delete_random(store_id, OLD_DELETIONS, max_id=int(last * 0.8)))
    rows = []
    with world.runtime() as rt:
        started = time.perf_counter()
        synced = rt.sync(store_id)
        seconds = time.perf_counter() - started
        audit = audit_table(rt.engine, sim, store_id)
        counted = store_summary(rt.engine, store_id).order_count - sim.count(store_id)
        rows.append(
            _row(
                f"{OLD_DELETIONS} old orders deleted upstream",
                "pages",
                changes=len(gone),
                flagged=audit.flagged,
                calls=synced.api_calls,
                seconds=round(seconds, 2),
                note=f"counted present although deleted: {counted}",
            )
        )
        result, seconds, _ = _traced(lambda: _reconcile(rt, store_id))
        audit = audit_table(rt.engine, sim, store_id)
        flagged_right = len(gone & set(_flagged(rt, store_id)))
        summary = store_summary(rt.engine, store_id)
        every = store_summaries(rt.engine)[store_id]
        counts_ok = summary.order_count == every.order_count == sim.count(store_id)
        rows.append(
            _row(
                f"{OLD_DELETIONS} old orders deleted upstream",
                "pages + reconcile",
                changes=len(gone),
                missing=audit.missing,
                duplicated=audit.duplicated,
                flagged=audit.flagged,
                wrongly_flagged=audit.wrongly_flagged,
                calls=result.api_calls,
                seconds=round(seconds, 1),
                note=f"flagged = deleted upstream: {flagged_right == len(gone) == audit.flagged};"
                f" live counts = served: {counts_ok}",
            )
        )
    return rows


def _flagged(rt: Runtime, store_id: str) -> list[int]:
    from ecosync_pipeline.storage.ranges import deleted_ids

    return deleted_ids(rt.engine, store_id)


def _stale(rt: Runtime, world: MirrorWorld, store_id: str, ids: set[int]) -> int:
    """How many of ``ids`` have a stored state other than the one served now."""
    if not ids:
        return 0
    stored = stored_in_range(rt.engine, store_id, min(ids), max(ids))
    stale = 0
    for order_id in ids:
        served = world.simulator.order(store_id, order_id)
        row = stored.get(order_id)
        if served is not None and row is not None:
            stale += row.fields["order_state"] != served["order_state_name"]
    return stale


def status_rows(world: MirrorWorld, store_id: str) -> list[Row]:
    """1,000 status changes of open orders upstream, then the status refresh.

    New orders arrive first (most are open), so that the store's open orders can take
    1,000 moves before they are all final; the page sync reads them in.
    """
    sim = world.simulator
    sim.add_orders(store_id, STATUS_ARRIVALS)
    with world.runtime() as rt:
        rt.sync(store_id)
    opened = set(sim.open_ids(store_id))
    moves = sim.advance_statuses(store_id, STATUS_CHANGES)
    changed = set(moves)
    watched = opened | changed
    rows = []
    with world.runtime() as rt:
        started = time.perf_counter()
        synced = rt.sync(store_id)
        seconds = time.perf_counter() - started
        rows.append(
            _row(
                f"{STATUS_CHANGES:,} status changes upstream",
                "pages",
                changes=len(moves),
                stale=_stale(rt, world, store_id, watched),
                calls=synced.api_calls,
                seconds=round(seconds, 2),
                note=f"{len(opened):,} open orders upstream",
            )
        )
        store = rt.store(store_id)
        started = time.perf_counter()
        with rt.client(store) as client:
            refreshed = refresh_statuses(store, client=client, engine=rt.engine)
        seconds = time.perf_counter() - started
        rows.append(
            _row(
                f"{STATUS_CHANGES:,} status changes upstream",
                "status refresh",
                changes=len(moves),
                stale=_stale(rt, world, store_id, watched),
                calls=refreshed.api_calls,
                bound=f"pages from the oldest open order: {refreshed.counts.pages}",
                seconds=round(seconds, 2),
                note=f"{refreshed.open_before:,} open orders in the table before, "
                f"{refreshed.open_after:,} after",
            )
        )
    return rows


def cursor_rows(world: MirrorWorld, store_id: str, progress: Progress) -> list[Row]:
    """Cursor-mode incremental syncs of k new orders, against ceil(k / 100) + 1."""
    world.set(store_id, read_mode="cursor")
    rows = []
    with world.runtime() as rt:
        for k in CURSOR_KS:
            world.simulator.add_orders(store_id, k)
            started = time.perf_counter()
            result = rt.sync(store_id)
            seconds = time.perf_counter() - started
            audit = audit_table(rt.engine, world.simulator, store_id)
            bound = math.ceil(k / 100) + 1
            within = "yes" if result.api_calls <= bound else "NO"
            rows.append(
                _row(
                    f"cursor incremental, k = {k:,}",
                    "cursor",
                    changes=k,
                    missing=audit.missing,
                    duplicated=audit.duplicated,
                    calls=result.api_calls,
                    bound=f"{bound} (ceil(k/100) + 1): {within}",
                    seconds=round(seconds, 2),
                    note=f"{result.orders_new:,} new orders",
                )
            )
            progress(f"cursor k={k}: {result.api_calls} calls")
    return rows
