"""The reconciliation against the simulator: id sets by range, flags, budget, cursor."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import delete

from ecosync_pipeline.errors import MirrorRefused
from ecosync_pipeline.mirror import reconcile_store
from ecosync_pipeline.mirror.reconcile import STATE, SweepState
from ecosync_pipeline.storage import iter_order_ids, orders, store_summary
from ecosync_pipeline.storage.ranges import deleted_ids, flag_deleted
from ecosync_pipeline.storage.store_state import read_state
from ecosync_pipeline_tests.helpers import World


def _reconcile(world: World, max_calls: int | None = None):  # type: ignore[no-untyped-def]
    with world.open() as rt:
        store = rt.store("SHOP")
        with rt.client(store) as client:
            return reconcile_store(store, client=client, engine=rt.engine, max_calls=max_calls)


def _live_ids(world: World) -> set[int]:
    with world.open() as rt:
        return set(iter_order_ids(rt.engine, "SHOP")) - set(deleted_ids(rt.engine, "SHOP"))


def test_full_reconcile_of_a_synced_store_costs_one_call_per_page_and_changes_nothing(
    world: World,
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    result = _reconcile(world)
    pages = math.ceil(world.simulator.count("SHOP") / 100)
    assert result.sweep_complete
    assert result.api_calls == pages
    c = result.counts
    assert (c.missing, c.flagged_deleted, c.updated) == (0, 0, 0)
    assert c.checked == world.simulator.count("SHOP")
    assert (c.low, c.high) == (0, world.simulator.last_id("SHOP"))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_reconcile_flags_exactly_the_orders_deleted_upstream_and_counts_leave_them_out(
    build: Callable[..., World], sqlite_url: str, backend: str
) -> None:
    world = build(database_url=sqlite_url) if backend == "sqlite" else build()
    with world.open() as rt:
        rt.sync("SHOP")
    gone = set(world.simulator.delete_random("SHOP", 24))
    assert len(gone) == 24
    result = _reconcile(world)
    assert result.counts.flagged_deleted == 24
    with world.open() as rt:
        assert set(deleted_ids(rt.engine, "SHOP")) == gone
        summary = store_summary(rt.engine, "SHOP")
    assert summary.order_count == world.simulator.count("SHOP")
    assert _live_ids(world) == set(world.simulator.ids("SHOP"))


def test_reconcile_fetches_orders_the_table_lacks_and_unflags_an_order_served_again(
    world: World,
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
        served = list(world.simulator.ids("SHOP"))
        skipped = served[300:340] + [served[-2]]
        with rt.engine.begin() as conn:
            conn.execute(delete(orders).where(orders.c.order_id.in_(skipped)))
            flag_deleted(conn, "SHOP", [served[7]])
    result = _reconcile(world)
    assert result.counts.missing == len(skipped) + 1
    assert result.counts.fetched == len(skipped) + 1
    assert result.counts.flagged_deleted == 0
    assert _live_ids(world) == set(served)


def test_reconcile_updates_every_changed_order_it_reads(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    ids = list(world.simulator.ids("SHOP"))
    for order_id in ids[:5]:
        world.simulator.set_status("SHOP", order_id, "Retourné")
    result = _reconcile(world)
    assert result.counts.updated == 5
    again = _reconcile(world)
    assert again.counts.updated == 0


def test_budgeted_runs_carry_the_sweep_on_and_cover_the_whole_history(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    gone = set(world.simulator.delete_random("SHOP", 10))
    pages = math.ceil(world.simulator.count("SHOP") / 100)
    runs, calls, low = 0, 0, None
    while True:
        result = _reconcile(world, max_calls=3)
        runs += 1
        calls += result.api_calls
        assert result.api_calls <= 3 + 1  # the budget, plus at most one retry-free overlap
        if low is not None:
            # Newest first: each run continues below where the last one stopped.
            assert result.counts.high is not None and result.counts.high < low
        low = result.counts.low
        # Orders deleted while the sweep is under way (below its cursor) are found too.
        if runs == 2:
            gone |= set(world.simulator.delete_random("SHOP", 2, max_id=low))
        if result.sweep_complete:
            break
        assert runs < 20
    assert calls <= pages + runs  # one boundary page re-read per later run
    with world.open() as rt:
        assert set(deleted_ids(rt.engine, "SHOP")) == gone
        state = SweepState.load(read_state(rt.engine, "SHOP", STATE))
    assert state.completed == 1 and state.floor is None
    assert state.calls_today == calls


def test_daily_budget_stops_the_reconciliation_until_the_next_day(build) -> None:  # type: ignore[no-untyped-def]
    world = build()
    world.stores[0] = replace(world.stores[0], reconcile_calls_per_day=4)
    with world.open() as rt:
        rt.sync("SHOP")
    first = _reconcile(world)
    assert first.api_calls == 4 and first.calls_left_today == 0
    second = _reconcile(world)
    assert second.api_calls == 0 and not second.sweep_complete


def test_reconcile_refuses_to_flag_everything_on_an_empty_answer(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.delete_orders("SHOP", list(world.simulator.ids("SHOP")))
    with pytest.raises(MirrorRefused, match="page 1 is empty"):
        _reconcile(world)
    with world.open() as rt:
        assert deleted_ids(rt.engine, "SHOP") == []
