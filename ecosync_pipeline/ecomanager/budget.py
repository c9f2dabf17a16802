"""One rate budget per store, shared by every process that calls EcoManager for it.

EcoManager limits a store (its token) in four windows at once: about 5 calls a second,
50 a minute, 1,000 an hour and 10,000 a day. A sync, a recovery, a check and a
reconcile of the same store, in as many processes or hosts, therefore draw from one
budget (RateBudget: 4/s, 40/min, 800/h and 8,000/day by default), counted in Redis.

The counting is pyrate-limiter's: a sliding log per store in one Redis sorted set
(``ecosync:budget:{STORE}``), checked against every window and written in one Lua
script, so two processes can never both take the last call of a window, and no
interval of a window's length ever holds more calls than its limit (Laravel's fixed
windows on the server then never see more either). One change to that script (see
CountingBucket): a window counts every call from its start on, not only those stamped
before this one, because each process stamps its calls with its own clock before the
script runs, and a call stamped later may reach Redis first.

When Redis is unreachable each process falls back to a limiter of its own with
``fallback_share`` of every window (a quarter by default: up to four processes stay
within the budget), says so in its log, and goes back to Redis when it answers again.
A caller that would wait longer than ``max_wait`` (a day window spent, say) gets
BudgetExhausted at once, with the time the budget reopens, instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import redis
from pyrate_limiter import AbstractBucket, InMemoryBucket, Rate, RateItem, RedisBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import BudgetExhausted
from ecosync_pipeline.ratebudget import WINDOW_NAMES, RateBudget

logger = logging.getLogger(__name__)

KEY_PREFIX = "ecosync:budget:"
REDIS_RETRY_SECONDS = 30.0
"""How long a process counts locally before it tries Redis again."""
TICKS = 1_000_000
"""Time unit of the counted calls and the windows: microseconds (pyrate-limiter counts in
whatever integer unit it is given), so windows shortened by a time scale stay exact."""
LEAK_EVERY = 64
"""Calls between two clean-ups of entries older than the longest window."""

Mode = Literal["redis", "local"]


@dataclass(frozen=True)
class WindowUse:
    """One window of a store's budget now: its limit, calls in it, calls left."""

    window: str
    limit: int
    used: int

    @property
    def left(self) -> int:
        """Calls still allowed in this window."""
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class Quota:
    """A store's budget as it stands: every window, and where it is counted."""

    store: str
    mode: Mode
    windows: tuple[WindowUse, ...]

    def window(self, name: str) -> WindowUse:
        """The window called ``name`` (second, minute, hour or day)."""
        return next(w for w in self.windows if w.window == name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: {"store", "counted_in", "<window>_used", "<window>_left", ...}."""
        out: dict[str, Any] = {"store": self.store, "counted_in": self.mode}
        for w in self.windows:
            out[f"{w.window}_limit"] = w.limit
            out[f"{w.window}_used"] = w.used
            out[f"{w.window}_left"] = w.left
        return out


_COUNT_TO_NOW = "redis.call('ZCOUNT', bucket, window_start, now)"
_COUNT_ALL_SINCE = "redis.call('ZCOUNT', bucket, window_start, '+inf')"
if _COUNT_TO_NOW not in LuaScript.PUT_ITEM:
    raise ImportError(
        "pyrate-limiter's Redis script no longer counts a window as "
        f"{_COUNT_TO_NOW!r}; install pyrate-limiter 4.6.0, the release CountingBucket was "
        "written for, or update CountingBucket for this one"
    )
PUT_SCRIPT = LuaScript.PUT_ITEM.replace(_COUNT_TO_NOW, _COUNT_ALL_SINCE)


class CountingBucket(RedisBucket):
    """pyrate-limiter's RedisBucket whose windows count every call since their start.

    The library's script counts the calls stamped between a window's start and the new
    call's stamp. Process A stamps a call, process B stamps a later one and reaches Redis
    first: A's script does not see B's call, and both get the window's last place (seen
    with two processes: two calls under 1 ms apart against a pace of one per 50 ms).
    Counting up to +inf makes the call written last see every call within a window of
    it, whatever the order of stamps, so no window's length ever holds more than its
    limit.
    """

    @classmethod
    def init(  # type: ignore[override]
        cls, rates: list[Rate], client: redis.Redis, bucket_key: str
    ) -> CountingBucket:
        return cls(rates, client, bucket_key, client.script_load(PUT_SCRIPT))


def rates_for(budget: RateBudget, share: float = 1.0) -> list[Rate]:
    """pyrate-limiter Rates for the budget's windows (``share`` of each, at least 1).

    The first rate, one call per 1/per_second of a second, spaces the calls evenly
    instead of letting a second's calls leave in one burst: the server counts from when
    requests arrive, and a burst whose first request was slow to arrive can put one
    second's calls and the next second's first ones into one server window.
    """
    limits: dict[str, int] = {}
    for name, limit in budget.limits().items():
        # Each window keeps more than the shorter one (a small share of a small budget
        # would otherwise round several windows to the same count).
        limits[name] = max(1, int(limit * share), max(limits.values(), default=0) + 1)
    intervals = {name: _interval(budget, name) for name in limits}
    names = list(limits)
    for shorter, longer in zip(names, names[1:], strict=False):
        # A share rounds the shorter window down, so a budget whose windows are equally
        # dense would leave a longer one denser: pyrate-limiter refuses such a list.
        densest = limits[shorter] * intervals[longer] // intervals[shorter]
        limits[longer] = min(limits[longer], densest)
    rates = [Rate(limit, intervals[name]) for name, limit in limits.items()]
    if limits["second"] > 1:
        # Rounded down: pyrate-limiter wants each longer window no denser than a shorter
        # one; the second's own limit still caps it.
        rates.insert(0, Rate(1, max(1, intervals["second"] // limits["second"])))
    return rates


def _interval(budget: RateBudget, window: str) -> int:
    return max(1, round(budget.window_seconds(window) * TICKS))


class SharedBudget:
    """A store's rate budget as one process sees it: ``acquire()`` before every call."""

    def __init__(
        self,
        store: str,
        budget: RateBudget,
        redis_url: str | None,
        *,
        max_wait: float = 300.0,
        redis_retry: float = REDIS_RETRY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        client: redis.Redis | None = None,
    ) -> None:
        self.store = store
        self.budget = budget
        self.max_wait = max_wait
        self.redis_retry = redis_retry
        self._sleep = sleep
        self._lock = threading.Lock()
        self._key = f"{KEY_PREFIX}{store}"
        self._owns_redis = client is None
        if client is None and redis_url:
            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._redis = client
        self._remote: CountingBucket | None = None
        # Alone (no Redis configured) the process has the whole budget; sharing it
        # without Redis, only its fallback share.
        share = 1.0 if self._redis is None else budget.fallback_share
        self._local = InMemoryBucket(rates_for(budget, share))
        self._local_share = share
        self._retry_redis_at = 0.0
        self._puts = 0
        if self._redis is None:
            logger.info(
                "store %s: rate budget counted in this process only (no Redis configured)",
                store,
            )

    def _redis_due(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._retry_redis_at

    def _bucket(self) -> AbstractBucket:
        """The Redis bucket when Redis answers, else this process's share."""
        if self._remote is None and self._redis_due():
            assert self._redis is not None
            try:
                self._remote = CountingBucket.init(rates_for(self.budget), self._redis, self._key)
            except redis.RedisError as exc:
                self._lost_redis(exc)
            else:
                if self._retry_redis_at:
                    logger.warning("store %s: Redis is back; rate budget shared again", self.store)
        return self._remote if self._remote is not None else self._local

    def _lost_redis(self, exc: Exception) -> None:
        self._remote = None
        self._retry_redis_at = time.monotonic() + self.redis_retry
        logger.warning(
            "store %s: Redis unreachable for the rate budget (%s); this process now allows "
            "itself %.0f%% of each window until Redis answers (retrying every %.0f s)",
            self.store,
            type(exc).__name__,
            self.budget.fallback_share * 100,
            self.redis_retry,
        )

    def _try(self) -> int:
        """Take one call if every window has room (0), else the ticks to wait."""
        with self._lock:
            bucket = self._bucket()
            item = RateItem(self.store, _now_ticks())
            try:
                if bucket.put(item):
                    self._leak(bucket, item.timestamp)
                    return 0
                wait = bucket.waiting(item)
            except redis.exceptions.NoScriptError:
                # Redis restarted and forgot the script: load it again on the next try.
                self._remote = None
                return 1
            except redis.RedisError as exc:
                self._lost_redis(exc)
                return self._try_local()
            assert isinstance(wait, int)
            return max(1, wait)

    def _try_local(self) -> int:
        item = RateItem(self.store, _now_ticks())
        if self._local.put(item):
            return 0
        wait = self._local.waiting(item)
        assert isinstance(wait, int)
        return max(1, wait)

    def _leak(self, bucket: AbstractBucket, now: int) -> None:
        self._puts += 1
        if self._puts % LEAK_EVERY == 0:
            bucket.leak(now)

    def acquire(self) -> float:
        """Block until the store's budget allows one call; return the seconds waited.

        Raises BudgetExhausted (naming when the budget reopens) instead of waiting
        longer than ``max_wait`` seconds.
        """
        started = time.monotonic()
        while True:
            wait = self._try()
            if wait == 0:
                return time.monotonic() - started
            seconds = wait / TICKS
            if time.monotonic() - started + seconds > self.max_wait:
                retry_at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
                raise BudgetExhausted(
                    f"store {self.store}: rate budget spent ({self._fullest()}); it allows "
                    f"the next call at {retry_at:%Y-%m-%d %H:%M:%S} UTC; the next run "
                    "continues from the position saved so far",
                    store=self.store,
                    retry_at=retry_at,
                )
            self._sleep(seconds)

    def _fullest(self) -> str:
        quota = self.quota()
        full = [w for w in quota.windows if w.left == 0]
        return ", ".join(f"{w.used}/{w.limit} this {w.window}" for w in full) or "windows full"

    def quota(self) -> Quota:
        """Calls used and left in each window, from Redis (or this process when it is down)."""
        now = time.time()
        with self._lock:
            bucket = self._bucket()
            try:
                used = self._counts(bucket, now)
            except redis.RedisError as exc:
                self._lost_redis(exc)
                bucket = self._local
                used = self._counts(bucket, now)
        share = 1.0 if bucket is not self._local else self._local_share
        mode: Mode = "redis" if isinstance(bucket, RedisBucket) else "local"
        allowed = {r.interval: r.limit for r in rates_for(self.budget, share)}
        windows = tuple(
            WindowUse(name, allowed[_interval(self.budget, name)], used[name])
            for name in WINDOW_NAMES
        )
        return Quota(self.store, mode, windows)

    def _counts(self, bucket: AbstractBucket, now: float) -> dict[str, int]:
        starts = {n: int((now - self.budget.window_seconds(n)) * TICKS) for n in WINDOW_NAMES}
        if isinstance(bucket, RedisBucket) and self._redis is not None:
            pipe = self._redis.pipeline()
            for name in WINDOW_NAMES:
                pipe.zcount(self._key, starts[name], "+inf")
            return dict(zip(WINDOW_NAMES, (int(c) for c in pipe.execute()), strict=True))
        assert isinstance(bucket, InMemoryBucket)
        stamps = [item.timestamp for item in bucket.items]
        return {n: sum(1 for t in stamps if t >= starts[n]) for n in WINDOW_NAMES}

    def finish_estimate(self, calls: int) -> datetime:
        """When ``calls`` more calls can have been made, from what is left in each window.

        A window with fewer calls left than needed costs one window length for every
        limit's worth beyond what is left (a first import of 1,817 calls at 800 an hour
        ends in the third hour); the per-second pace is a floor.
        """
        quota = self.quota()
        seconds = calls / quota.window("second").limit * self.budget.window_seconds("second")
        for w in quota.windows:
            beyond = calls - w.left
            if beyond > 0:
                periods = -(-beyond // w.limit)
                seconds = max(seconds, periods * self.budget.window_seconds(w.window))
        return datetime.now(timezone.utc) + timedelta(seconds=seconds)

    def describe_plan(self, calls: int) -> str:
        """One line for the log: the calls an import needs, what today leaves, the end."""
        left = self.quota().window("day").left
        done = self.finish_estimate(calls)
        spread = " (the runs stop when the budget is spent; the next one carries on)"
        return (
            f"store {self.store}: about {calls} API calls to go, {left} left in today's "
            f"rate budget; at the budget's pace this finishes around "
            f"{done:%Y-%m-%d %H:%M} UTC" + (spread if calls > left else "")
        )

    def close(self) -> None:
        """Release the Redis connection (unless it was handed in, shared)."""
        if self._redis is not None and self._owns_redis:
            self._redis.close()


def _now_ticks() -> int:
    # Wall-clock time: every process and host counts on the same (NTP-kept) clock.
    return time.time_ns() // (1_000_000_000 // TICKS)


_registry: dict[tuple[str | None, str], SharedBudget] = {}
_clients: dict[str, redis.Redis] = {}
"""One connection pool per Redis URL for every budget of the process (a run syncing a
thousand stores opens one pool, not a thousand)."""
_registry_lock = threading.Lock()
_default_url: list[str | None] = [None]


def use_redis(url: str | None) -> None:
    """Count this process's budgets in the Redis at ``url`` from now on (None: locally)."""
    _default_url[0] = url


def shared_budget(store: Store, redis_url: str | None = None) -> SharedBudget:
    """The process-wide budget of ``store`` (counted in ``redis_url``, or the process's
    default set by use_redis), created on first use."""
    url = redis_url if redis_url is not None else _default_url[0]
    key = (url, store.identifier)
    with _registry_lock:
        found = _registry.get(key)
        if found is None or found.budget != store.budget:
            client = None
            if url:
                client = _clients.get(url)
                if client is None:
                    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                    _clients[url] = client
            found = SharedBudget(store.identifier, store.budget, url, client=client)
            _registry[key] = found
        return found


def quota_metadata(store: Store, redis_url: str | None = None) -> dict[str, Any]:
    """The store's budget as flat metadata (calls used and left in each window, and
    where it is counted), for the Dagster layer's materializations and checks."""
    quota = shared_budget(store, redis_url).quota()
    return {f"rate_budget_{k}": v for k, v in quota.as_dict().items() if k != "store"}
