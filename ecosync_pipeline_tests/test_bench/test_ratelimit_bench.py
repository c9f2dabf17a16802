"""bench ratelimit in a tiny form: worker processes on one store under its shared budget,
against the simulator's four windows, over real HTTP and the real Redis."""

from __future__ import annotations

import json

import pytest

from ecosync_pipeline.lab.bench.ratelimit import busiest, ideal_seconds, run_ratelimit_bench
from ecosync_pipeline_tests.conftest import REDIS_MARKER


def test_ideal_schedule_puts_each_call_as_early_as_every_window_allows() -> None:
    assert ideal_seconds(3, [(1, 1.0)]) == 2.0
    assert ideal_seconds(5, [(2, 1.0)]) == 2.0  # 0, 0, 1, 1, 2
    # Spaced a quarter apart, four a second, eight a minute: the ninth waits a minute.
    rates = [(1, 0.25), (4, 1.0), (8, 60.0)]
    assert ideal_seconds(8, rates) == pytest.approx(1.75)
    assert ideal_seconds(9, rates) == pytest.approx(60.0)


def test_busiest_interval_counts_the_most_calls_in_any_window() -> None:
    stamps = [0.0, 0.1, 0.2, 1.05, 1.1, 5.0]
    assert busiest(stamps, 1.0) == 3
    assert busiest(stamps, 1.2) == 5
    assert busiest([], 1.0) == 0


def test_two_processes_of_mixed_traffic_get_no_429_and_keep_to_the_budget(
    redis_url: str,
) -> None:
    # Time scale 10: a minute lasts 6 s, so 80 calls spend two minutes of budget (slow
    # enough that a loaded machine still calls faster than the budget lets it).
    report = run_ratelimit_bench(
        calls=80, time_scale=10, processes=2, redis_url=redis_url, redis_marker=REDIS_MARKER
    )
    assert report.calls == 80 and set(report.calls_by_role) == {"sync", "reconcile"}
    # Every request the server saw was let through by the shared budget (a retry after a
    # timeout on a loaded machine is a second request, and it too waited for the budget).
    assert report.granted >= 80 and report.server_requests == report.granted
    assert report.server_429 == 0
    assert all(w.refused == 0 for w in report.windows)
    minute = next(w for w in report.windows if w.window == "minute")
    # The budget is used to its minute's 40 and the server's 50 is never reached. The
    # times are noted by each process after the budget's decision, so on a loaded machine
    # a call noted late can add one or two to an interval: the budget's own cap is proved
    # in Redis by test_budget (test_processes_sharing_a_store_never_exceed_its_budget_together).
    assert minute.budget == 40 and minute.server == 50 and 40 <= minute.peak < minute.server
    # At least two minutes' worth: the 41st request waits for the first minute, the rest
    # are spaced (a retried request adds to that, never less).
    assert report.ideal_seconds >= 60 / 10 + 39 * 0.025 - 0.01
    assert report.seconds >= report.ideal_seconds * 0.95
    data = json.loads(json.dumps(report.as_dict()))
    assert data["server_429"] == 0 and 0 < data["ratio"] <= 1.05
    assert "busiest interval" in report.table()
