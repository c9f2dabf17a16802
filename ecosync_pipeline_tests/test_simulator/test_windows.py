"""The four rate-limit windows of the contract, enforced per store over real HTTP."""

from __future__ import annotations

import time

import pytest

from ecosync_pipeline.lab.simulator import Simulator, SimulatorClient, SimulatorError, StoreSpec
from ecosync_pipeline.lab.simulator.windows import FixedWindows
from ecosync_pipeline_tests.test_simulator.helpers import fetch

NO_LIMITS = {
    "limit_per_second": None,
    "limit_per_minute": None,
    "limit_per_hour": None,
    "limit_per_day": None,
}


@pytest.fixture
def natur(simulator: Simulator) -> Simulator:
    return simulator.configure([StoreSpec("NATUR", count=100), StoreSpec("JWLR", count=10)])


def statuses(sim: Simulator, n: int, store: str = "NATUR") -> list[int]:
    return [fetch(sim, store).status_code for _ in range(n)]


def test_sixth_request_in_a_second_is_refused_with_retry_after(natur: Simulator) -> None:
    # time_scale 0.2: the "second" lasts 5 s, so a loaded machine still fits 6 requests in.
    natur.set_faults("NATUR", rate_windows=True, time_scale=0.2)
    responses = [fetch(natur, "NATUR") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert 0 < float(responses[-1].headers["Retry-After"]) <= 5.0
    assert [r.headers["X-RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    usage = natur.window_usage("NATUR")
    assert usage["second"]["refused"] == 1 and usage["second"]["used"] == 5
    assert usage["minute"]["used"] == 5  # the refused request counts in no window
    assert statuses(natur, 6, "JWLR") == [200] * 6  # windows are per store (off for JWLR)


@pytest.mark.parametrize(
    ("window", "switch", "scale"),
    [("minute", "limit_per_minute", 20), ("hour", "limit_per_hour", 1200)],
)
def test_scaled_window_fills_then_reopens_after_retry_after(
    natur: Simulator, window: str, switch: str, scale: int
) -> None:
    # Scaled so the window lasts three real seconds; only that window limited.
    natur.set_faults("NATUR", rate_windows=True, time_scale=scale, **{**NO_LIMITS, switch: 4})
    assert statuses(natur, 4) == [200] * 4
    refused = fetch(natur, "NATUR")
    assert refused.status_code == 429
    wait = float(refused.headers["Retry-After"])
    assert 0 < wait <= 3.0
    assert natur.window_usage("NATUR")[window]["refused"] == 1
    time.sleep(wait + 0.02)
    assert statuses(natur, 4) == [200] * 4


def test_day_window_in_a_second_and_retry_after_names_the_fullest_window(
    natur: Simulator,
) -> None:
    natur.set_faults(
        "NATUR", rate_windows=True, time_scale=21_600, **{**NO_LIMITS, "limit_per_day": 3}
    )
    assert statuses(natur, 3) == [200] * 3
    day_wait = float(fetch(natur, "NATUR").headers["Retry-After"])
    assert 1.0 < day_wait <= 4.0  # the day lasts four seconds here
    assert natur.window_usage("NATUR")["day"]["refused"] == 1


def test_windows_off_by_default_and_when_switched_off(natur: Simulator) -> None:
    assert statuses(natur, 12) == [200] * 12
    natur.set_faults("NATUR", rate_windows=True, time_scale=0.2)
    assert 429 in statuses(natur, 12)
    natur.set_faults("NATUR", rate_windows=False)
    assert statuses(natur, 12) == [200] * 12


def test_refused_tokens_cost_the_store_nothing(natur: Simulator) -> None:
    natur.set_faults("NATUR", rate_windows=True, time_scale=0.2)
    assert [fetch(natur, "NATUR", token="x" * 80).status_code for _ in range(10)] == [403] * 10
    assert natur.window_usage("NATUR")["second"]["used"] == 0
    assert statuses(natur, 5) == [200] * 5


def test_windows_over_the_control_api(natur: Simulator) -> None:
    assert natur.url is not None
    with SimulatorClient(natur.url) as client:
        client.set_faults("NATUR", rate_windows=True, limit_per_second=2, time_scale=0.2)
        assert statuses(natur, 3) == [200, 200, 429]
        usage = client.describe("NATUR")["rate_windows"]
    assert usage["second"] == {
        "limit": 2,
        "used": 2,
        "refused": 1,
        "resets_in": pytest.approx(2.5, abs=2.5),
    }
    assert usage["day"]["limit"] == 10_000 and usage["day"]["used"] == 2


@pytest.mark.parametrize(
    "switches",
    [{"limit_per_minute": 0}, {"limit_per_hour": 2.5}, {"rate_windows": "yes"}, {"time_scale": 0}],
)
def test_bad_window_switches_are_refused(natur: Simulator, switches: dict[str, object]) -> None:
    with pytest.raises(SimulatorError):
        natur.set_faults("NATUR", **switches)


def test_fixed_windows_start_at_the_first_request_after_expiry() -> None:
    windows = FixedWindows()
    limits: dict[str, int | None] = {"second": 2, "minute": None, "hour": None, "day": None}
    assert windows.hit(10.0, limits, 1.0) is None
    assert windows.hit(10.5, limits, 1.0) is None
    refusal = windows.hit(10.9, limits, 1.0)
    assert refusal is not None and refusal.window == "second"
    assert refusal.retry_after == pytest.approx(0.1)
    assert windows.hit(11.0, limits, 1.0) is None  # a new window from 11.0
    assert windows.hit(11.9, limits, 1.0) is None
    assert windows.hit(11.95, limits, 1.0) is not None


def test_when_several_windows_are_full_retry_after_is_the_longest_wait() -> None:
    windows = FixedWindows()
    limits: dict[str, int | None] = {"second": 5, "minute": 2, "hour": None, "day": 2}
    assert windows.hit(0.0, limits, 1.0) is None
    assert windows.hit(1.0, limits, 1.0) is None
    refusal = windows.hit(2.0, limits, 1.0)  # minute (58 s left) and day (86,398 s) full
    assert refusal is not None and refusal.window == "day"
    assert refusal.retry_after == pytest.approx(86_398)
    assert refusal.header(1.0) == "86398"
    assert windows.refused == {"day": 1}
