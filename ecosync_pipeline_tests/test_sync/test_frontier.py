"""The frontier (DESIGN, invariants 14 and 16): only the poll moves it, and a read cut short
resumes where it stopped.

Against the simulator over HTTP and the real databases: an order a webhook delivery
wrote above the frontier never makes the next sync skip the ids below it (pages and
cursor mode); a cursor-mode first import cut by the rate budget, by its time budget or
by SIGKILL keeps what it committed and carries on from its cursor.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ecosync_pipeline.cli import main
from ecosync_pipeline.config import ReadMode, Store, validate_store_identifier
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.positions.database_layer import DatabaseLayer
from ecosync_pipeline.ratebudget import RateBudget
from ecosync_pipeline.storage import iter_order_ids
from ecosync_pipeline.storage.store_state import read_cursor_read, read_frontier
from ecosync_pipeline.sync.cursor import sync_by_cursor
from ecosync_pipeline.webhooks.apply import ApplyResult, apply_pending
from ecosync_pipeline.webhooks.inbox import Delivery, store_delivery
from ecosync_pipeline_tests.faults_support import sync_command
from ecosync_pipeline_tests.helpers import World, ecosync_environ, reconcile, write_stores_file

SHOP, BIG_ID = validate_store_identifier("SHOP"), validate_store_identifier("BIG")
SMALL = StoreSpec("SHOP", name="Shop", first_id=1, count=200, gap_rate=0.0, seed=5)
"""Ids 1..200, and new ones follow on: 201, 202, ..."""
BIG = StoreSpec("BIG", name="Big", first_id=1000, count=1000, gap_rate=0.05, seed=3)
"""Ten newest-first pages of 100."""
# 3 calls an "hour" of 6 s (time scale 600); a run waits at most a second for a call.
SPENT = RateBudget(per_second=1, per_minute=2, per_hour=3, per_day=4, time_scale=600)


@pytest.fixture
def build_options() -> dict[str, Any]:
    return {"import_per_page": 100}


def world_of(build: Callable[..., World], spec: StoreSpec, read_mode: ReadMode = "pages") -> World:
    """A world of one store in the given read mode (the stores file says it too)."""
    world = build([spec])
    world.stores[0] = replace(world.stores[0], read_mode=read_mode)
    write_stores_file(Path(world.settings.stores_file), world.stores)
    return world


def deliver_created(world: World, engine: Any, order_id: int) -> ApplyResult:
    """Order ``order_id``'s OrderCreated, stored as the receiver stores it, then applied."""
    body = json.dumps({"data": world.simulator.order(SHOP, order_id)}).encode()
    now = datetime.now(timezone.utc)
    store_delivery(engine, Delivery(SHOP, "OrderCreated", "1", order_id, body, now))
    return apply_pending(engine, {SHOP: "Shop"})


@pytest.mark.parametrize("read_mode", ["pages", "cursor"])
def test_an_order_a_webhook_wrote_above_the_frontier_leaves_nothing_missing_after_the_next_sync(
    build: Callable[..., World], read_mode: ReadMode
) -> None:
    world = world_of(build, SMALL, read_mode)
    with world.open() as rt:
        rt.sync(SHOP)
        assert read_frontier(rt.engine, SHOP) == 200
    assert world.simulator.add_orders(SHOP, 60) == list(range(201, 261))
    with world.open() as rt:
        # Only order 260's delivery reaches the receiver: the others were dropped.
        assert deliver_created(world, rt.engine, 260).gaps == {SHOP: [260]}
        assert set(iter_order_ids(rt.engine, SHOP)) == set(range(1, 201)) | {260}
        assert read_frontier(rt.engine, SHOP) == 200  # a delivery never moves it
        # A later one below 260 but above the frontier still leaves a gap (229 unread).
        assert deliver_created(world, rt.engine, 230).gaps == {SHOP: [230]}
        result = rt.sync(SHOP)  # the next sync, no reconcile
        rec = reconcile(rt, world.simulator, SHOP)
        assert read_frontier(rt.engine, SHOP) == 260
    assert (rec.missing, rec.duplicated) == (0, 0), rec
    assert result.reached_end and result.last_order_id == 260


def test_database_layer_resumes_from_the_frontier_not_from_an_order_a_webhook_wrote(
    build: Callable[..., World],
) -> None:
    world = world_of(build, SMALL)
    with world.open() as rt:
        rt.sync(SHOP)
    world.simulator.add_orders(SHOP, 60)
    with world.open() as rt:
        deliver_created(world, rt.engine, 260)
        position = DatabaseLayer(rt.engine).read(rt.store(SHOP))
    # 200 orders below the frontier: page 10 of 20, holding order 200.
    assert (position.target, position.last_page) == (200, 10)


def _client(store: Store, budget: RateBudget, redis_url: str, **kw: Any) -> EcoManagerClient:
    return EcoManagerClient.from_store(
        store, rate_limiter=SharedBudget(store.identifier, budget, redis_url, **kw)
    )


def test_cursor_first_import_cut_by_the_rate_budget_carries_on_from_its_cursor(
    build: Callable[..., World], redis_url: str
) -> None:
    world = world_of(build, BIG, "cursor")
    store = world.stores[0]
    with world.open() as rt, _client(store, SPENT, redis_url, max_wait=1.0) as client:
        first = sync_by_cursor(store, client=client, engine=rt.engine)
        # Each page read is committed with the read's progress; nothing is proved yet.
        assert len(set(iter_order_ids(rt.engine, BIG_ID))) == first.orders_new == 300
        assert read_frontier(rt.engine, BIG_ID) is None
        under_way = read_cursor_read(rt.engine, BIG_ID)
        assert under_way is not None and under_way.pages == 3 and under_way.floor is None
    assert first.stopped_by_budget and not first.reached_end and first.api_calls == 3
    # The next day: the same store, counted in the same Redis, with room again.
    with world.open() as rt, _client(store, RateBudget.derived(1000), redis_url) as client:
        second = sync_by_cursor(store, client=client, engine=rt.engine)
        rec = reconcile(rt, world.simulator, BIG_ID)
        assert read_frontier(rt.engine, BIG_ID) == world.simulator.last_id(BIG_ID)
        assert read_cursor_read(rt.engine, BIG_ID) is None
    # Pages 4..10 from the cursor (none of the first run's again), one call confirming
    # the store's lowest id, and the newest page, which meets the new frontier.
    assert second.reached_end and second.api_calls == 7 + 1 + 1
    assert first.orders_new + second.orders_new == 1000
    assert (rec.missing, rec.duplicated) == (0, 0), rec


def _cli_environ(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The variables an `ecosync sync` of the world's store needs: its stores file, the
    test's databases and a backup in the test's folder."""
    return ecosync_environ(
        database_url,
        redis_url,
        tmp_path / "stores.yaml",
        tmp_path / "backup" / "sync-positions.json",
    )


def test_cursor_store_honours_the_time_budget_of_ecosync_sync_and_completes_across_runs(
    build: Callable[..., World], tmp_path: Path, redis_url: str, database_url: str
) -> None:
    world = world_of(build, BIG, "cursor")
    # The token's variable is set already (make_world).
    env = _cli_environ(database_url, redis_url, tmp_path)
    runs = []
    for _ in range(15):
        world.simulator.reset_counts(BIG_ID)
        done = CliRunner().invoke(
            main, ["sync", "--store", BIG_ID, "--budget-seconds", "0.001"], env=env
        )
        assert done.exit_code == 0, done.output
        runs.append(world.simulator.request_count(BIG_ID))
        with world.open() as rt:
            if read_cursor_read(rt.engine, BIG_ID) is None:
                break
    # A run out of time stops after the page it committed: one page a run, the last one
    # also confirming the store's lowest id.
    assert runs == [1] * 9 + [2], runs
    with world.open() as rt:
        rec = reconcile(rt, world.simulator, BIG_ID)
        assert read_frontier(rt.engine, BIG_ID) == world.simulator.last_id(BIG_ID)
    assert (rec.missing, rec.duplicated) == (0, 0), rec


def test_cursor_sync_killed_mid_read_loses_nothing_and_reads_at_most_one_page_again(
    build: Callable[..., World], tmp_path: Path, redis_url: str, database_url: str
) -> None:
    world = world_of(build, BIG, "cursor")
    env = {**os.environ, **_cli_environ(database_url, redis_url, tmp_path)}
    # Slow pages: the process is killed while it reads, between two commits or in one.
    world.simulator.set_faults(BIG_ID, latency_ms=150)
    world.simulator.reset_counts(BIG_ID)
    log = tmp_path / "sync.log"
    process = sync_command(env, log, [BIG_ID])
    try:
        with world.open() as rt:
            deadline = time.monotonic() + 60
            while (read := read_cursor_read(rt.engine, BIG_ID)) is None or read.pages < 4:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_calls = world.simulator.request_count(BIG_ID)
    world.simulator.set_faults(BIG_ID, latency_ms=0)
    with world.open() as rt:
        committed = read_cursor_read(rt.engine, BIG_ID)
        assert committed is not None and 4 <= committed.pages < 10
        assert read_frontier(rt.engine, BIG_ID) is None
        world.simulator.reset_counts(BIG_ID)
        resumed = rt.sync(BIG_ID)
        rec = reconcile(rt, world.simulator, BIG_ID)
    assert (rec.missing, rec.duplicated) == (0, 0), rec
    assert resumed.reached_end
    # The next run reads on from the last page committed: the pages left, the call that
    # confirms the store's lowest id and the newest page; the killed run fetched at most
    # one page it did not commit.
    assert resumed.api_calls == (10 - committed.pages) + 1 + 1
    assert killed_calls - committed.pages <= 1
