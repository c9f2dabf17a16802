"""429 and 503 with every Retry-After the contract and RFC 9110 allow, from each window.

A Retry-After is delta-seconds or an HTTP-date (any of its three formats), or absent. A
wait the server asks for is kept (never retried sooner), and a wait longer than a run
waits (the hour or the day window spent, a maintenance of hours) or past its time
budget stops the run cleanly at once, naming the store, the page and when to retry:
never a sleep past the budget, never a retry the server said would fail.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import formatdate

import pytest

from ecosync_pipeline.errors import ServerHoldOff
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.sync.engine import SyncResult
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, make_token

ORDERS = list(range(101, 141))
"""Two pages of 20."""


def rfc850(at: float) -> str:
    """An HTTP-date in RFC 850's obsolete format, which RFC 9110 requires reading."""
    return time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(at))


def asctime(at: float) -> str:
    """An HTTP-date in C's asctime() format, the third one RFC 9110 requires reading."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(at))


# case: (status, Retry-After in seconds from now or as given, the wait it asks for)
WAITS: dict[str, tuple[int, str | None, float]] = {
    "429, delta-seconds": (429, "3", 3.0),
    "503, delta-seconds": (503, "3", 3.0),
    "429, IMF-fixdate": (429, "date:30", 30.0),
    "503, IMF-fixdate": (503, "date:30", 30.0),
    "429, RFC 850 date": (429, "rfc850:30", 30.0),
    "429, asctime date": (429, "asctime:30", 30.0),
    "429, absent": (429, None, 2.0),
}


def header(value: str | None) -> str | None:
    """The Retry-After value of a case, its dates taken from now."""
    if value is None or ":" not in value:
        return value
    kind, seconds = value.split(":")
    at = time.time() + float(seconds)
    return {"date": formatdate(at, usegmt=True), "rfc850": rfc850(at), "asctime": asctime(at)}[kind]


@pytest.mark.parametrize("case", list(WAITS))
def test_retry_after_in_every_format_is_waited_then_the_read_completes(
    case: str, pg_world: CliWorld, sleepless_runtime: Runtime, sleeps: list[float]
) -> None:
    status, value, asked = WAITS[case]
    store = AdversarialStore("WAITS", make_token(), list(ORDERS))
    store.refusals = [(status, header(value))]
    pg_world.configure(store)
    result = sleepless_runtime.sync("WAITS", budget_seconds=600)
    assert result.reached_end and set(pg_world.stored("WAITS")) == set(ORDERS)
    assert len(sleeps) == 1, sleeps
    # An HTTP-date has whole seconds: the wait is at most one second short of the ask.
    assert asked - 1.5 <= sleeps[0] <= asked + 0.5, (case, sleeps)


# window: the Retry-After a server counting that window sends once it is spent
WINDOWS = {"second": 1, "minute": 45, "hour": 3_000, "day": 80_000}


def stopped_message(caplog: pytest.LogCaptureFixture, store: str) -> str:
    """The warning a run stopped by the server leaves in the log."""
    found = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and f"store {store}" in r.getMessage()
    ]
    assert found, "the run stopped without saying why"
    return found[-1]


def held_off(runtime: Runtime, store: str, caplog: pytest.LogCaptureFixture) -> str:
    """What a run the server holds off says: its clean stop's warning, or its error when
    the hold-off came before any page was read (while its position was verified)."""
    try:
        result = runtime.sync(store, budget_seconds=600)
    except ServerHoldOff as exc:
        assert exc.store == store and exc.retry_at > datetime.now(timezone.utc)
        return str(exc)
    assert result.stopped_by_budget and not result.reached_end
    return stopped_message(caplog, store)


def names_time(message: str, seconds: float) -> bool:
    """Whether ``message`` names the UTC minute about ``seconds`` from now (or the next)."""
    now = datetime.now(timezone.utc)
    return any(
        f"{now + timedelta(seconds=seconds + shift):%Y-%m-%d %H:%M}" in message
        for shift in (-60, 0, 60)
    )


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_429_of_each_window_is_waited_or_stops_the_run_saying_when(
    window: str,
    pg_world: CliWorld,
    sleepless_runtime: Runtime,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Second and minute: waited, then read on. Hour and day: one request, no sleep, the
    run stops cleanly naming the store, the page and when; the next run misses nothing."""
    seconds = WINDOWS[window]
    store = AdversarialStore("WINDOW", make_token(), list(ORDERS))
    # A spent window keeps answering 429 until it reopens.
    store.refusals = [(429, str(seconds))] * (6 if seconds > 60 else 1)
    pg_world.configure(store)
    if seconds <= 60:
        result = sleepless_runtime.sync("WINDOW", budget_seconds=600)
        assert sleeps == [float(seconds)]
        assert result.reached_end and set(pg_world.stored("WINDOW")) == set(ORDERS)
        return
    message = held_off(sleepless_runtime, "WINDOW", caplog)
    assert sleeps == [], "slept (and retried) against a window that reopens much later"
    assert len(store.refusals) == 5, "asked again before the Retry-After the server gave"
    assert pg_world.stored("WINDOW") == {}
    assert "page 1" in message and names_time(message, seconds), message
    assert "next run" in message, message
    store.refusals.clear()
    again = sleepless_runtime.sync("WINDOW", budget_seconds=600)
    assert again.reached_end and set(pg_world.stored("WINDOW")) == set(ORDERS)


def test_a_wait_past_the_runs_time_budget_stops_it_instead_of_sleeping(
    pg_world: CliWorld,
    sleepless_runtime: Runtime,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A minute window's 45 s, on page 4, against a run given 5 s: it stops cleanly after
    page 3, saying when."""
    store = AdversarialStore("LATE", make_token(), list(ORDERS))
    pg_world.configure(store)
    first = sleepless_runtime.sync("LATE", budget_seconds=600)
    assert first.reached_end
    store.add(*range(141, 181))
    store.before_page[3] = lambda: store.refusals.append((429, "45"))
    result: SyncResult = sleepless_runtime.sync("LATE", budget_seconds=5)
    assert sum(sleeps) <= 5, f"slept {sum(sleeps)} s in a run given 5 s"
    assert result.stopped_by_budget and result.to_page == 3
    message = stopped_message(caplog, "LATE")
    assert "page 4" in message and names_time(message, 45), message
    assert set(pg_world.stored("LATE")) == set(range(101, 161))
    again = sleepless_runtime.sync("LATE", budget_seconds=600)
    assert again.reached_end and set(pg_world.stored("LATE")) == set(store.ids)
