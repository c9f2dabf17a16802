"""The per-process spacing limiter, and the clients of a store sharing one budget."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

import httpx
import pytest

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.lab.bench.pacing import RateLimiter, shared_limiter

TOKEN = "R4te" * 20


def make_store(rps: float | None = None) -> Store:
    """A store with a fresh identifier (hence a fresh shared limiter); the default rate
    unless ``rps`` is given."""
    store = Store(
        identifier=f"L{uuid.uuid4().hex[:12].upper()}",
        name="Limited store",
        base_url="https://limited.example.test",
        token_env="ECOSYNC_TEST_LIMITED_TOKEN",
    )
    return store if rps is None else replace(store, requests_per_second=rps)


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"data": [{"id": int(request.url.params["page"])}]})


def client_for(store: Store) -> EcoManagerClient:
    return EcoManagerClient(store, TOKEN, transport=httpx.MockTransport(answer))


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_first_call_passes_at_once_and_later_calls_are_spaced_by_the_interval() -> None:
    fake = FakeClock()
    limiter = RateLimiter(4.0, clock=fake.clock, sleep=fake.sleep)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == [0.0, 0.25, 0.25, 0.25]
    assert fake.now == pytest.approx(100.75)


def test_idle_time_is_not_banked_into_a_burst() -> None:
    fake = FakeClock()
    limiter = RateLimiter(4.0, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire()
    fake.now += 10.0  # a long pause earns one immediate call, not forty
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.25)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


def test_twenty_client_calls_under_the_default_budget_never_put_five_in_a_second() -> None:
    store = make_store()  # the default budget, 4 calls in any second
    assert store.budget.per_second == 4
    sent: list[float] = []

    def timed(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return answer(request)

    client = EcoManagerClient(store, TOKEN, transport=httpx.MockTransport(timed))
    with client:
        for page in range(1, 21):
            client.fetch_page(page)
    assert client.stats.ok == 20
    assert sent[-1] - sent[0] >= 4.0 - 0.01  # calls 17..20 wait for the fifth second
    assert sent[-1] - sent[0] < 8.0, "waiting for the window, not a stall"
    # Granted 250 ms apart; the 50 ms margin is for a busy machine delaying one send
    # more than another between the grant and the transport.
    assert max(sum(1 for t in sent if s <= t < s + 0.95) for s in sent) <= 4


def test_threads_sharing_a_limiter_are_spaced_in_total() -> None:
    limiter = RateLimiter(20.0)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        limiter.acquire()
        with lock:
            starts.append(time.monotonic())

    begin = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 10
    assert max(starts) - begin >= 9 * 0.05


def test_two_clients_of_one_store_share_one_budget() -> None:
    store = make_store(rps=2.0)
    with client_for(store) as first, client_for(store) as second:
        assert first.rate_limiter is second.rate_limiter
        start = time.monotonic()
        first.fetch_page(1)
        second.fetch_page(1)
        both = time.monotonic() - start
    # Two calls a second, spaced: the second client's call is granted half a second after
    # the first's, which was granted after ``start``.
    assert both >= 0.49


def test_clients_of_different_stores_do_not_wait_for_each_other() -> None:
    slow_a, slow_b = make_store(rps=0.5), make_store(rps=0.5)
    with client_for(slow_a) as a, client_for(slow_b) as b:
        assert a.rate_limiter is not b.rate_limiter
        a.fetch_page(1)
        start = time.monotonic()
        b.fetch_page(1)
        waited = time.monotonic() - start
    # Sharing would have cost 2 s here.
    assert waited < 1.0


def test_shared_limiter_keeps_the_stricter_rate_of_two_configurations() -> None:
    key = f"K{uuid.uuid4().hex[:12]}"
    limiter = shared_limiter(key, 4.0)
    assert shared_limiter(key, 10.0) is limiter and limiter.rate == 4.0
    assert shared_limiter(key, 2.0) is limiter and limiter.rate == 2.0
