"""EcoManager misbehaving under the sync: throttling, outages, timeouts, and deleted orders."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from ecosync_pipeline.errors import ApiError
from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline_tests.faults_support import (
    Driver,
    FaultFigures,
    Scale,
    audit,
)
from ecosync_pipeline_tests.helpers import World

pytestmark = pytest.mark.faults

# 429, 503 and timeouts, each drawn for about a third of 10% of the requests.
API_FAULT_RATE = 0.1 / 3


def test_api_answering_429_503_or_timing_out_loses_and_duplicates_no_order(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale
) -> None:
    world, figures = scenario(
        "(f) API 429/503/timeout 10%",
        rate_limit_rate=API_FAULT_RATE,
        unavailable_rate=API_FAULT_RATE,
        timeout_rate=API_FAULT_RATE,
        # Longer than the client's 0.5 s timeout: the client gives up and retries.
        timeout_seconds=1.0,
        retry_after=0,
    )
    sim = world.simulator
    for store in ("DILST", "PURNA"):
        sim.set_faults(store, retry_after=None)  # a 429 without Retry-After
    # Retries make these runs succeed; one whose every retry fails may stop with an
    # ApiError naming the store and page, and the next run takes over.
    driver = Driver(world, figures, allowed=(ApiError,), seed=6)
    for _ in range(scale.api_rounds):
        driver.sync_round(new_orders=40)
    stats = [sim.stats(s) for s in driver.stores]
    by_kind = {k: sum(s[k] for s in stats) for k in ("rate_limited", "unavailable", "timeout")}
    requests = sum(s["total"] for s in stats)
    figures.add("injected", sum(by_kind.values()))
    figures.add("mid_sync", sum(by_kind.values()))
    figures.notes.append(
        f"{requests} API requests: {by_kind['rate_limited']} x 429, "
        f"{by_kind['unavailable']} x 503, {by_kind['timeout']} timeouts "
        f"({sum(by_kind.values()) / requests:.1%})"
    )
    assert sum(by_kind.values()) >= 0.05 * requests
    audit(driver)


def test_orders_deleted_between_runs_shift_pages_and_lose_no_order(
    build: Callable[..., World],
    record: Callable[[str], FaultFigures],
    scale: Scale,
    redis_url: str,
) -> None:
    world = build()
    figures = record("(g) orders deleted between runs")
    sim = world.simulator
    driver = Driver(world, figures, seed=7)
    rng = random.Random(7)
    driver.sync_round()
    targets_deleted = 0
    for _ in range(scale.deletion_rounds):
        with driver.runtime() as rt:
            synced = {k: v.last_order_id for k, v in store_summaries(rt.engine).items()}
        for store in driver.stores:
            last = synced[store]
            assert last is not None
            deleted = sim.delete_random(store, rng.randint(5, 30))  # anywhere: pages shift
            # Around the resume page, where a shift moves the position's page.
            deleted += sim.delete_random(store, rng.randint(1, 15), min_id=last - 300, max_id=last)
            if rng.random() < 0.4 and sim.contains(store, last):
                deleted += sim.delete_orders(store, [last])  # the order the position names
                targets_deleted += 1
            sim.add_orders(store, rng.randint(0, 45))
            figures.add("injected", len(deleted))
        driver.sync_round()
    figures.notes.append(f"the last synced order itself was deleted {targets_deleted} times")
    audit(driver)


def test_orders_deleted_while_a_run_reads_later_pages_are_not_skipped(
    build: Callable[..., World],
    record: Callable[[str], FaultFigures],
    scale: Scale,
    redis_url: str,
) -> None:
    """Beyond (g): deletions during a run, which page-number paging cannot see by itself.

    Reading page P+1 after an order on pages 1..P was deleted skips the order that moved
    from P+1 onto P; it lies below the position's last order id, so no run fetches it.
    """
    world = build()
    figures = record("(h) orders deleted during runs")
    sim = world.simulator
    initial = sum(sim.count(s.identifier) for s in world.stores)
    sim.set_faults(None, deletion_rate=0.1)
    driver = Driver(world, figures, seed=8)
    for _ in range(2):
        driver.sync_round(new_orders=30)
    sim.clear_faults()
    now = sum(sim.count(s.identifier) for s in world.stores)
    deleted = initial + driver.added - now
    assert deleted > 0, "no order was deleted during the runs: the scenario tested nothing"
    figures.add("injected", deleted)
    figures.add("mid_sync", initial + driver.added - now)
    audit(driver)
