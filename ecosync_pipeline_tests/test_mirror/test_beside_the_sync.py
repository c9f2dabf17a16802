"""The reconciliation and the status refresh beside the sync: exact caps, no lock taken from
the sync, and counts that say what the merge rule really wrote."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete

from ecosync_pipeline.cli import main
from ecosync_pipeline.errors import StoreLocked
from ecosync_pipeline.mirror import reconcile_store, refresh_statuses
from ecosync_pipeline.mirror.compare import MirrorCounts, repair
from ecosync_pipeline.mirror.reconcile import STATE, SweepState
from ecosync_pipeline.mirror.segments import Segment
from ecosync_pipeline.storage import orders, store_lock, transaction
from ecosync_pipeline.storage.locks import repair_lock
from ecosync_pipeline.storage.merge import Gone, merge_orders
from ecosync_pipeline.storage.ranges import deleted_ids
from ecosync_pipeline.storage.store_state import read_state
from ecosync_pipeline_tests.helpers import World
from ecosync_pipeline_tests.test_mirror.test_commands import _env


def _calls(world: World) -> int:
    """Requests the simulator answered for SHOP (counted on the server's side)."""
    return int(world.simulator.stats("SHOP")["total"])


def _skewed(world: World) -> None:
    """Sync, then lose most rows: the locator's hint (from the count) is far off."""
    with world.open() as rt:
        rt.sync("SHOP")
        ids = sorted(world.simulator.ids("SHOP"))
        with rt.engine.begin() as conn:
            conn.execute(delete(orders).where(orders.c.order_id.in_(ids[:-5])))
    world.simulator.reset_counts("SHOP")


@pytest.mark.parametrize("command", ["reconcile", "refresh-statuses"])
def test_max_calls_1_spends_exactly_one_call_the_locators_included(
    world: World, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    _env(world, monkeypatch)
    _skewed(world)
    if command == "refresh-statuses":
        with world.open() as rt, rt.engine.begin() as conn:
            conn.execute(orders.update().values(order_state="En cours"))
    out = CliRunner().invoke(main, [command, "--store", "SHOP", "--max-calls", "1", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["api_calls"] == 1
    assert _calls(world) == 1  # the server saw one request


def test_the_daily_share_counts_every_call_and_is_never_overspent(
    build: Callable[..., World],
) -> None:
    world = build()
    world.stores[0] = replace(world.stores[0], reconcile_calls_per_day=3)
    _skewed(world)
    spent = []
    for _ in range(3):
        with world.open() as rt:
            store = rt.store("SHOP")
            with rt.client(store) as client:
                spent.append(reconcile_store(store, client=client, engine=rt.engine).api_calls)
    assert spent == [3, 0, 0]
    assert _calls(world) == 3
    with world.open() as rt:
        state = SweepState.load(read_state(rt.engine, "SHOP", STATE))
    assert state.calls_today == 3  # recorded, though the locator committed no segment


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_sync_started_during_a_reconcile_succeeds_and_waits_at_most_a_page(
    build: Callable[..., World], sqlite_url: str, backend: str
) -> None:
    world = build(database_url=sqlite_url) if backend == "sqlite" else build()
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 30)
    world.simulator.set_faults("SHOP", latency_ms=150)  # each page takes a while
    done: dict[str, Any] = {}

    def sweep() -> None:
        with world.open() as rt:
            store = rt.store("SHOP")
            with rt.client(store) as client:
                done["reconcile"] = reconcile_store(store, client=client, engine=rt.engine)

    thread = threading.Thread(target=sweep)
    thread.start()
    time.sleep(0.5)  # the sweep is under way
    assert thread.is_alive()
    with world.open() as rt:
        started = time.monotonic()
        result = rt.sync("SHOP")
        took = time.monotonic() - started
    thread.join(timeout=60)
    assert result.orders_new == 30 and result.reached_end
    assert done["reconcile"].sweep_complete
    # Alone, the sync reads its pages at 150 ms each; beside the sweep it waits for no lock.
    assert took < (result.api_calls + 2) * 0.15 + 2.0


def test_a_second_reconcile_of_a_store_fails_at_once_and_the_sync_still_runs(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
        with repair_lock(rt.engine, "SHOP", "reconciliation"):
            store = rt.store("SHOP")
            started = time.monotonic()
            with rt.client(store) as client, pytest.raises(StoreLocked) as caught:
                reconcile_store(store, client=client, engine=rt.engine)
            assert time.monotonic() - started < 1
            assert "another reconciliation is already running" in str(caught.value)
            rt.sync("SHOP")  # the sync's lock is another one
            with rt.client(store) as client:
                refresh_statuses(store, client=client, engine=rt.engine)  # and so is this


def test_a_real_second_sync_fails_at_once_naming_the_run_that_holds_the_store(
    world: World,
) -> None:
    with world.open() as rt, store_lock(rt.engine, "SHOP", holder="Dagster run 4b2a"):
        started = time.monotonic()
        with pytest.raises(StoreLocked) as caught:
            rt.sync("SHOP")
        assert time.monotonic() - started < 1
    message = str(caught.value)
    assert "another sync is already running" in message
    assert "Dagster run 4b2a" in message and "in process" in message


def test_a_segment_read_before_a_deletion_neither_revives_nor_counts_it(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
        store = rt.store("SHOP")
        with rt.client(store) as client:
            page = client.fetch_page(1, 100)  # the reconciliation's read, before the deletion
        victim = page.orders[10]
        world.simulator.delete_orders("SHOP", [victim.id])
        with transaction(rt.engine, "a delivery") as conn:  # OrderDeleted, newer updated_at
            assert victim.updated_at is not None
            late = victim.updated_at.replace(year=victim.updated_at.year + 1)
            gone = Gone(victim.id, late, version=late, order=victim)
            assert merge_orders(conn, "SHOP", [gone]).counts.flagged == 1
        segment = Segment("SHOP", 1, 0, page.last_id or 0, page.orders, page.orders[0].fetched_at)
        counts = MirrorCounts()
        with transaction(rt.engine, "the reconciliation's page") as conn:
            diff, written = repair(conn, segment)
        counts.add(diff, written)
        assert [o.id for o in diff.reappeared] == [victim.id]  # found flagged, served
        assert (counts.fetched, counts.reappeared, counts.stale) == (0, 0, 1)  # not written
        assert deleted_ids(rt.engine, "SHOP") == [victim.id]
