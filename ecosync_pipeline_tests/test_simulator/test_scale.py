"""A NATUR-sized store is served fast and small; the demo stores have the promised shapes."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from itertools import islice
from pathlib import Path

import pytest

from ecosync_pipeline.config import load_stores
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline_tests.test_simulator.helpers import fetch

STORES_FILE = Path(__file__).resolve().parents[2] / "data" / "stores.yaml"


@pytest.fixture(scope="module")
def big() -> Simulator:
    """181,601 orders with 3% gaps: page 9,081 at 20 a page is the last page."""
    return Simulator([StoreSpec("NATUR", count=181_601, gap_rate=0.03)], environ={})


def _serve(sim: Simulator, page: int, per_page: int = 20) -> tuple[float, int]:
    started = time.perf_counter()
    reply = sim.handle_orders(
        "NATUR",
        page=str(page),
        per_page=str(per_page),
        authorization=f"Bearer {sim.token('NATUR')}",
        path="/x",
    )
    return time.perf_counter() - started, len(reply.body["data"])


def test_last_page_9081_of_a_natur_sized_store_is_served_in_milliseconds(big: Simulator) -> None:
    assert big.last_page("NATUR") == 9081
    timings = [_serve(big, page) for page in (9080, 9081) for _ in range(11)]
    assert {n for _, n in timings} == {20, 1}
    assert statistics.median(t for t, _ in timings) < 0.05


def test_pages_stay_fast_after_thousands_of_deletions(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=181_601, gap_rate=0.03)])
    simulator.delete_random("NATUR", 1000)
    simulator.add_orders("NATUR", 50)
    last_page = simulator.last_page("NATUR")
    timings = []
    for page in (1, 4000, last_page - 1, last_page):
        started = time.perf_counter()
        response = fetch(simulator, "NATUR", page)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json()["data"]
    assert statistics.median(timings) < 0.05
    assert fetch(simulator, "NATUR", last_page).json()["data"][-1]["id"] == simulator.last_id(
        "NATUR"
    )


def test_serving_pages_of_a_natur_sized_store_allocates_little(big: Simulator) -> None:
    _serve(big, 1)  # warm up imports and caches outside the measurement
    tracemalloc.start()
    try:
        for page in (1, 2_000, 4_540, 9_080, 9_081, 9_082):
            _serve(big, page)
        _serve(big, 1_000, per_page=100)
        # The ground truth streams: reading part of it holds nothing.
        assert sum(1 for _ in islice(big.ids("NATUR"), 20_000)) == 20_000
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 181,601 orders held as dicts would take hundreds of MB; a page is a few hundred KB.
    assert peak < 3_000_000


def test_same_seed_serves_identical_pages_and_another_seed_differs() -> None:
    def pages(seed: int, store_seed: int | None = None) -> list[object]:
        sim = Simulator(
            [StoreSpec("NATUR", count=500, gap_rate=0.1, seed=store_seed)], seed=seed, environ={}
        )
        return [
            sim.handle_orders(
                "NATUR",
                page=str(p),
                per_page="100",
                authorization=f"Bearer {sim.token('NATUR')}",
                path="/x",
            ).body["data"]
            for p in (1, 5)
        ]

    assert pages(1) == pages(1)
    assert pages(1) != pages(2)
    assert pages(1, store_seed=9) == pages(2, store_seed=9)


def test_runtime_changes_replay_identically_for_the_same_seed() -> None:
    def scenario() -> tuple[list[int], list[int], list[int]]:
        sim = Simulator([StoreSpec("NATUR", count=1000, gap_rate=0.03)], seed=4, environ={})
        return (
            sim.delete_random("NATUR", 5),
            sim.add_orders("NATUR", 5),
            sim.change_random_statuses("NATUR", 3),
        )

    assert scenario() == scenario()


def test_demo_stores_have_the_documented_shapes() -> None:
    stores = load_stores(STORES_FILE)
    assert [s.identifier for s in stores] == ["NATUR", "PURNA", "DILST", "MGSTR", "JWLR"]
    for store in stores:
        assert store.base_url == f"http://127.0.0.1:8765/{store.identifier}"
        assert store.token_env == f"ECOSYNC_TOKEN_{store.identifier}"
    sim = Simulator.from_stores(stores, environ={})
    assert sim.last_id("NATUR") == 181_601 and sim.last_id("JWLR") == 177_606
    for identifier in ("NATUR", "JWLR", "DILST", "MGSTR"):
        last_id = sim.last_id(identifier)
        assert last_id is not None
        assert 0.95 < sim.count(identifier) / last_id < 0.99  # about 3% of ids missing
        assert sim.first_id(identifier) == 1
    for identifier in ("DILST", "MGSTR"):
        assert 95_000 < (sim.last_id(identifier) or 0) < 105_000
    # PURNA: ids offset and sparse, so id / 20 - 10 overshoots its last page by far.
    purna_last = sim.last_id("PURNA")
    assert purna_last is not None and sim.first_id("PURNA") == 500_000
    assert sim.count("PURNA") == 30_000 and sim.last_page("PURNA") == 1_500
    assert purna_last // 20 - 10 - sim.last_page("PURNA") > 30_000
