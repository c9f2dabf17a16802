"""The old system's strategies over a PageFetcher, and the goal bound."""

from __future__ import annotations

from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.lab.bench import (
    goal_bound,
    old_fix,
    old_fix_start_page,
    restart_from_page_one,
)
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec

DENSE = StoreSpec("DENSE", first_id=1, last_id=3000, gap_rate=0.03)
SPARSE = StoreSpec("SPARSE", first_id=500_000, count=600, stride=7, gap_rate=0.03)


class SimFetcher:
    """Pages straight from a Simulator's ids, counting calls."""

    def __init__(self, simulator: Simulator, store: str) -> None:
        self.simulator = simulator
        self.store = store
        self.calls = 0

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        self.calls += 1
        size = per_page or 20
        ids = self.simulator.page_ids(self.store, page, size)
        return Page(self.store, page, size, tuple(Order(id=i) for i in ids))


def test_restart_from_page_one_reads_every_page_and_re_reads_every_stored_order() -> None:
    sim = Simulator([DENSE])
    stored = frozenset(sim.ids("DENSE"))
    new = frozenset(sim.add_orders("DENSE", 15))
    fetcher = SimFetcher(sim, "DENSE")
    run = restart_from_page_one(fetcher)
    assert (
        run.calls
        == fetcher.calls
        == sim.last_page("DENSE") + (1 if sim.count("DENSE") % 20 == 0 else 0)
    )
    assert run.missing(new) == 0
    assert run.re_read(stored) == len(stored)


def test_old_fix_misses_every_new_order_when_the_id_estimate_overshoots() -> None:
    sim = Simulator([SPARSE])
    last = sim.last_id("SPARSE")
    assert last is not None
    new = frozenset(sim.add_orders("SPARSE", 15))
    run = old_fix(SimFetcher(sim, "SPARSE"), last)
    assert run.start_page == old_fix_start_page(last) > sim.last_page("SPARSE")
    assert run.calls == 3  # three empty pages and it stops
    assert run.missing(new) == 15
    assert run.recorded_page == run.start_page + 2 - 10


def test_old_fix_collects_new_orders_when_the_estimate_lands_before_the_end() -> None:
    sim = Simulator([DENSE])
    stored = frozenset(sim.ids("DENSE"))
    last = max(stored)
    new = frozenset(sim.add_orders("DENSE", 15))
    run = old_fix(SimFetcher(sim, "DENSE"), last)
    assert run.start_page < sim.last_page("DENSE")
    assert run.missing(new) == 0
    assert run.re_read(stored) > 0  # it starts 10 pages back and reads them again
    assert run.inserted_ids == new


def test_goal_bound_is_new_pages_plus_two_plus_twice_log_of_the_error() -> None:
    assert goal_bound(0, 0) == 2
    assert goal_bound(15, 0) == 3
    assert goal_bound(400, 0) == 22
    assert goal_bound(5000, 0) == 252
    assert goal_bound(0, 1) == 4
    assert goal_bound(0, 262) == 2 + 2 * 9
