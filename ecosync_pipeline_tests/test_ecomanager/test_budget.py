"""The shared rate budget: four windows counted in the real Redis, across processes."""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from pyrate_limiter import validate_rate_list

from ecosync_pipeline.config import Store, parse_stores
from ecosync_pipeline.ecomanager import budget as budget_module
from ecosync_pipeline.ecomanager.budget import SharedBudget, shared_budget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import BudgetExhausted, ConfigError
from ecosync_pipeline.ratebudget import RateBudget
from ecosync_pipeline_tests.faults_support import RedisProcess

# Windows 100 times longer than real ones: the "second" lasts 100 s, so a test that
# takes a few calls in a row sees only the window it aims at.
SLOW = 0.01
DOWN_URL = "redis://127.0.0.1:1/3"  # nothing listens on port 1


def store_id() -> str:
    return f"B{uuid.uuid4().hex[:12].upper()}"


def take(budget: SharedBudget, n: int) -> int:
    """Calls taken out of ``n`` attempts that may not wait (max_wait 0)."""
    taken = 0
    for _ in range(n):
        try:
            budget.acquire()
        except BudgetExhausted:
            continue
        taken += 1
    return taken


# One call a second, 2 a minute, 3 an hour, 4 a day; scaled so that the window under
# test lasts 6 s and every shorter one at most a quarter of a second. A call that would
# wait for the window under test waits far longer than max_wait (1 s), even if a busy
# machine stalls the test for seconds between its calls.
SMALL = RateBudget(per_second=1, per_minute=2, per_hour=3, per_day=4)
WAIT = 1.0


@pytest.mark.parametrize(
    ("window", "scale", "allowed"),
    [("minute", 10, 2), ("hour", 600, 3), ("day", 14_400, 4)],
)
def test_each_window_caps_the_calls_and_the_refusal_says_when_it_reopens(
    redis_url: str, window: str, scale: int, allowed: int
) -> None:
    sid = store_id()
    budget = replace(SMALL, time_scale=scale)
    shared = SharedBudget(sid, budget, redis_url, max_wait=WAIT)
    for _ in range(allowed):
        shared.acquire()  # each waits 0.25 s at most for the shorter windows
    with pytest.raises(BudgetExhausted) as info:
        shared.acquire()
    assert info.value.store == sid and sid in str(info.value)
    assert f"{allowed}/{allowed} this {window}" in str(info.value)
    assert info.value.retry_at.timestamp() > time.time()
    quota = shared.quota()
    assert quota.mode == "redis" and quota.window(window).left == 0
    assert quota.window("day").used == allowed and quota.window("day").limit == 4


def test_calls_are_spaced_evenly_within_a_second(redis_url: str) -> None:
    # 4 a "second" of 200 ms: one call every 50 ms, never four at once.
    budget = RateBudget(per_second=4, per_minute=40, per_hour=800, per_day=8000, time_scale=5)
    shared = SharedBudget(store_id(), budget, redis_url)
    started = time.monotonic()
    for _ in range(6):
        shared.acquire()
    # Four a second would let the first four through at once and the sixth at 200 ms;
    # spaced, the sixth goes 5 x 50 ms after the first.
    assert time.monotonic() - started >= 0.245


def test_two_budget_objects_of_one_store_share_the_count_in_redis(redis_url: str) -> None:
    sid = store_id()
    budget = replace(SMALL, time_scale=10)  # a minute of 6 s holds 2 calls
    first = SharedBudget(sid, budget, redis_url, max_wait=WAIT)
    second = SharedBudget(sid, budget, redis_url, max_wait=WAIT)
    assert take(first, 1) == 1
    assert take(second, 3) == 1
    assert first.quota().window("minute").used == 2
    other = SharedBudget(store_id(), budget, redis_url, max_wait=WAIT)
    assert take(other, 3) == 2  # another store has its own budget


def _hammer(store: str, budget: RateBudget, url: str, start: object, queue: object) -> None:
    """Take calls (waiting at most 0.3 s each) until the budget says no; report when."""
    shared = SharedBudget(store, budget, url, max_wait=0.3)
    start.wait(timeout=60)  # type: ignore[attr-defined]
    granted = []
    for _ in range(100):
        try:
            shared.acquire()
        except BudgetExhausted:
            break
        granted.append(time.time())
    queue.put(granted)  # type: ignore[attr-defined]


def test_processes_sharing_a_store_never_exceed_its_budget_together(redis_url: str) -> None:
    sid = store_id()
    # A call every 50 ms, 30 in a minute of 6 s, 31 in an hour: both processes take
    # calls until a window is spent for longer than they may wait.
    budget = RateBudget(per_second=2, per_minute=30, per_hour=31, per_day=32, time_scale=10)
    context = multiprocessing.get_context("spawn")
    queue, start = context.Queue(), context.Barrier(2)
    workers = [
        context.Process(target=_hammer, args=(sid, budget, redis_url, start, queue))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    taken = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    stamps = sorted(t for granted in taken for t in granted)
    # Both processes ran to the end under the one budget (on a quiet machine the first to
    # start may take every call of the minute and the other is held back: that is sharing).
    assert [worker.exitcode for worker in workers] == [0, 0], [len(g) for g in taken]
    # Together: 30 in the first minute (31 if it ended first: the hour caps it), never
    # more than 30 within a minute.
    assert len(stamps) in (30, 31)
    assert max(sum(1 for t in stamps if s <= t < s + 5.9) for s in stamps) <= 30
    assert SharedBudget(sid, budget, redis_url).quota().window("hour").used == len(stamps)


def test_a_call_stamped_before_one_already_counted_still_sees_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes stamp their calls with their own clocks before Redis counts them: the
    one stamped later may arrive first. The earlier stamp must still find the window full."""
    sid = store_id()
    budget = replace(SMALL, time_scale=SLOW)  # one call in 100 s
    late_first, early_second = (SharedBudget(sid, budget, redis_url, max_wait=0) for _ in "ab")
    now = time.time_ns() // 1_000
    stamps = iter([now + 1_000, now])  # 1 ms apart, the later one written first
    monkeypatch.setattr(budget_module, "_now_ticks", lambda: next(stamps))
    late_first.acquire()
    with pytest.raises(BudgetExhausted, match="1/1 this second"):
        early_second.acquire()
    assert SharedBudget(sid, budget, redis_url).quota().window("second").used == 1


def test_redis_down_falls_back_to_a_share_of_the_budget_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = RateBudget(per_second=8, per_minute=40, per_hour=800, per_day=8000, time_scale=SLOW)
    shared = SharedBudget(store_id(), budget, DOWN_URL, max_wait=0)
    with caplog.at_level(logging.WARNING, logger="ecosync_pipeline.ecomanager.budget"):
        assert take(shared, 5) == 1  # a quarter of 8 a "second" of 100 s, spaced by 50 s
    assert "Redis unreachable" in caplog.text and "25%" in caplog.text
    quota = shared.quota()
    assert quota.mode == "local"
    assert [w.limit for w in quota.windows] == [2, 10, 200, 2000]
    assert quota.window("second").used == 1


def test_redis_killed_then_restarted_falls_back_then_shares_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    try:
        budget = replace(SMALL, per_minute=20, per_hour=30, per_day=40, time_scale=100)
        shared = SharedBudget(store_id(), budget, server.url, max_wait=0.3, redis_retry=0.2)
        assert take(shared, 1) == 1 and shared.quota().mode == "redis"
        server.kill()
        with caplog.at_level(logging.WARNING, logger="ecosync_pipeline.ecomanager.budget"):
            assert take(shared, 1) == 1  # counted locally, at a quarter of the budget
            assert shared.quota().mode == "local"
            server.restart()
            time.sleep(0.25)
            assert take(shared, 1) == 1
        assert "Redis unreachable" in caplog.text and "Redis is back" in caplog.text
        quota = shared.quota()
        assert quota.mode == "redis" and quota.window("minute").used == 1  # a fresh Redis
    finally:
        server.stop()


def test_without_redis_a_lone_process_has_the_whole_budget() -> None:
    budget = RateBudget(per_second=8, per_minute=40, per_hour=800, per_day=8000, time_scale=SLOW)
    shared = SharedBudget(store_id(), budget, None, max_wait=0)
    assert take(shared, 3) == 1
    quota = shared.quota()
    assert quota.mode == "local" and [w.limit for w in quota.windows] == [8, 40, 800, 8000]


def test_client_raises_budget_exhausted_before_sending_anything(redis_url: str) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": []})

    store = Store(store_id(), "Budgeted", "https://b.example.test", "ECOSYNC_TEST_B_TOKEN")
    limiter = SharedBudget(
        store.identifier, replace(SMALL, time_scale=10), redis_url, max_wait=WAIT
    )
    client = EcoManagerClient(
        store, "T0ken" * 16, transport=httpx.MockTransport(answer), rate_limiter=limiter
    )
    with client:
        client.fetch_page(1)
        client.fetch_page(2)
        with pytest.raises(BudgetExhausted) as info:
            client.fetch_page(3)
    assert len(sent) == 2 and info.value.store == store.identifier


def test_clients_share_the_process_budget_of_their_store_counted_in_redis(redis_url: str) -> None:
    store = Store(store_id(), "Shared", "https://s.example.test", "ECOSYNC_TEST_S_TOKEN")
    one, two = shared_budget(store, redis_url), shared_budget(store, redis_url)
    assert one is two and one.budget == RateBudget()  # 4/s, 40/min, 800/h, 8,000/day
    faster = replace(store, requests_per_second=50)
    assert shared_budget(faster, redis_url).budget.per_minute == 500


STORES = """stores:
  - identifier: NATUR
    name: n
    base_url: https://natur.example.test
    token_env: T
{extra}"""


def parse_budget(extra: str) -> RateBudget:
    return parse_stores(STORES.format(extra=extra))[0].budget


def test_stores_file_budget_defaults_and_partial_windows() -> None:
    assert parse_budget("") == RateBudget(4, 40, 800, 8000)
    assert parse_budget("    requests_per_second: 2\n") == RateBudget(2, 20, 400, 4000)
    got = parse_budget("    rate_budget: {per_second: 3, per_day: 5000, fallback_share: 0.5}\n")
    assert got == RateBudget(3, 30, 600, 5000, fallback_share=0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    rate_budget: {per_hour: 0}\n", "per_hour must be a whole number"),
        ("    rate_budget: {per_minute: 400}\n", "no more calls a second"),
        ("    rate_budget: {per_minute: 4}\n", "must be more than per_second"),
        ("    rate_budget: {per_week: 9}\n", "unknown rate_budget keys per_week"),
        ("    rate_budget: {fallback_share: 0}\n", "fallback_share"),
        ("    rate_budget: 40\n", "must be a mapping"),
    ],
)
def test_stores_file_budget_errors_name_the_store_and_the_key(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_budget(extra)
    assert "store NATUR" in str(info.value) and "line 2" in str(info.value)


def test_dagster_and_runtime_clients_draw_from_the_shared_budget_in_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecosync_pipeline.defs.resources import EcoManagerResource

    store = Store(store_id(), "Dagster", "https://d.example.test", "ECOSYNC_TEST_D_TOKEN")
    monkeypatch.setenv(store.token_env, "D0ken" * 16)
    resource = EcoManagerResource(budget_redis_url=redis_url)
    with resource.client(store) as client:
        budget = client.rate_limiter
        assert budget is shared_budget(store, redis_url)
        assert isinstance(budget, SharedBudget) and budget.quota().mode == "redis"


def test_redis_that_forgot_the_script_is_given_it_again_without_falling_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    server = RedisProcess(tmp_path / "redis").start()
    try:
        budget = replace(SMALL, per_minute=20, per_hour=30, per_day=40, time_scale=100)
        shared = SharedBudget(store_id(), budget, server.url, max_wait=0.3)
        assert take(shared, 1) == 1
        redis.Redis.from_url(server.url).script_flush()  # our own server: as after a restart
        with caplog.at_level(logging.WARNING, logger="ecosync_pipeline.ecomanager.budget"):
            assert take(shared, 2) == 2
        assert "Redis unreachable" not in caplog.text
        assert shared.quota().mode == "redis" and shared.quota().window("minute").used == 3
    finally:
        server.stop()


def test_a_budget_of_equally_dense_windows_keeps_a_valid_rate_list_at_any_share() -> None:
    # 50/s, 3,000/min, 180,000/h, 4,320,000/day: a quarter rounds the second down to 12
    # while the minute's quarter (750) would allow 12.5 a second.
    budget = RateBudget(per_second=50, per_minute=3_000, per_hour=180_000, per_day=4_320_000)
    for share in (1.0, 0.25, 0.1, 0.01):
        rates = budget_module.rates_for(budget, share)
        assert validate_rate_list(rates), (share, rates)
        densities = [rate.limit / rate.interval for rate in rates[1:]]
        assert densities == sorted(densities, reverse=True), (share, rates)
