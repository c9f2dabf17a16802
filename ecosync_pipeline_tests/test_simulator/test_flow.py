"""Orders changing over time: the status flow, N moves at once, and swaps mid-run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from ecosync_pipeline.lab.simulator import Change, Simulator, SimulatorClient, StoreSpec
from ecosync_pipeline.lab.simulator.flow import FINAL_STATES, OPEN_FLOW, StatusClock
from ecosync_pipeline_tests.test_simulator.helpers import fetch

UNTIL = datetime(2026, 11, 20, 18, 0, tzinfo=timezone.utc)


@pytest.fixture
def shop(simulator: Simulator) -> Simulator:
    """NATUR: 600 orders over the last 30 days (so about a hundred are still open)."""
    return simulator.configure(
        [
            StoreSpec("NATUR", count=600, started=UNTIL - timedelta(days=30), until=UNTIL),
            StoreSpec("JWLR", count=50),
        ]
    )


def states(sim: Simulator, store: str) -> dict[int, str]:
    out = {}
    for order_id in sim.ids(store):
        order = sim.order(store, order_id)
        assert order is not None
        out[order_id] = str(order["order_state_name"])
    return out


Transitions = list[tuple[str, str, str]]


@pytest.fixture
def transitions(shop: Simulator) -> Iterator[Transitions]:
    """(state before, after, updated_at after) of every NATUR status change from now on."""
    before = states(shop, "NATUR")
    seen: Transitions = []

    def observe(change: Change) -> None:
        if change.kind == "status" and change.store == "NATUR":
            new = str(change.order["order_state_name"])
            seen.append((before[change.order_id], new, str(change.order["updated_at"])))
            before[change.order_id] = new

    shop.add_observer(observe)
    try:
        yield seen
    finally:
        shop.remove_observer(observe)


def test_open_orders_are_exactly_those_not_in_a_final_state(shop: Simulator) -> None:
    expected = sorted(i for i, s in states(shop, "NATUR").items() if s not in FINAL_STATES)
    assert 50 < len(expected) < 600
    assert shop.open_ids("NATUR") == expected
    assert shop.describe("NATUR")["open_orders"] == len(expected)


def test_advance_moves_open_orders_along_the_flow_and_never_final_ones(
    shop: Simulator, transitions: Transitions
) -> None:
    seen = transitions
    finals_before = {i for i, s in states(shop, "NATUR").items() if s in FINAL_STATES}
    moved = shop.advance_statuses("NATUR", 120)
    assert len(moved) == len(seen) == 120
    assert not finals_before & set(moved)
    for old, new, _ in seen:
        assert new in {s for s, _ in OPEN_FLOW[old]}, (old, new)
    # The open set follows: orders that reached a final state left it.
    assert shop.open_ids("NATUR") == sorted(
        i for i, s in states(shop, "NATUR").items() if s not in FINAL_STATES
    )


def test_advance_stops_when_every_order_is_final(shop: Simulator) -> None:
    moved = shop.advance_statuses("NATUR", 100_000)
    assert 0 < len(moved) < 100_000
    assert shop.open_ids("NATUR") == []
    assert set(states(shop, "NATUR").values()) <= FINAL_STATES
    assert shop.advance_statuses("NATUR", 5) == []


def test_advance_over_the_control_api_updates_served_orders(shop: Simulator) -> None:
    assert shop.url is not None
    with SimulatorClient(shop.url) as client:
        moved = client.advance_statuses("NATUR", 10)
    assert len(moved) == 10
    order = shop.order("NATUR", moved[-1])
    assert order is not None and order["updated_at"] > "2026-11-21"


def test_status_flow_moves_orders_over_time_without_any_request(
    shop: Simulator, transitions: Transitions
) -> None:
    seen = transitions
    # A simulated hour a second, 1% of the open orders a simulated minute: about 60 moves.
    shop.set_faults("NATUR", status_flow_rate=0.01, time_scale=3600)
    deadline = time.monotonic() + 5
    while len(seen) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)  # the served simulator's clock ticks by itself
    shop.set_faults("NATUR", status_flow_rate=0.0)
    assert len(seen) >= 20
    for old, new, _ in seen:
        assert new in {s for s, _ in OPEN_FLOW[old]}
    assert [at for *_, at in seen] == sorted(at for *_, at in seen)
    frozen = len(seen)
    time.sleep(0.3)
    assert len(seen) == frozen  # switched off: nothing moves
    assert shop.stats("JWLR")["total"] == 0


def test_status_clock_moves_the_share_of_open_orders_per_simulated_minute() -> None:
    clock = StatusClock()
    assert clock.due(0.0, 0.1, 1.0, 100) == 0  # the first look only starts counting
    assert clock.due(60.0, 0.1, 1.0, 100) == 10  # a minute: 10% of 100
    assert clock.due(61.0, 0.1, 60.0, 100) == 10  # time_scale 60: a second is a minute
    # Fractions carry over: 40 looks of 1.5 s at 0.1/min of 100 add up to 10 moves.
    assert sum(clock.due(61.0 + 1.5 * k, 0.1, 1.0, 100) for k in range(1, 41)) == 10
    assert clock.due(200.0, 0.0, 1.0, 100) == 0


def test_swap_rate_deletes_and_adds_at_the_same_instant_keeping_the_total(
    shop: Simulator,
) -> None:
    before = set(shop.ids("JWLR"))
    shop.set_faults("JWLR", swap_rate=1.0)
    totals = [fetch(shop, "JWLR").json()["meta"]["total"] for _ in range(5)]
    after = set(shop.ids("JWLR"))
    assert totals == [50] * 5
    assert len(before - after) == 5 and len(after - before) == 5
    assert min(after - before) > max(before)


def test_swap_over_the_control_api(shop: Simulator) -> None:
    assert shop.url is not None
    with SimulatorClient(shop.url) as client:
        deleted, added = client.swap_orders("JWLR", 3)
    assert len(deleted) == len(added) == 3 and shop.count("JWLR") == 50
    assert not any(shop.contains("JWLR", i) for i in deleted)
    assert all(shop.contains("JWLR", i) for i in added)
