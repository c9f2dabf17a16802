"""Per-store request spacing in one process: the benchmarks' and tests' pacer.

Shared by every client of a store in the process.

EcoManager limits each store (about 5 requests/s, 50/min, ...), not each client, so two
clients of one store (a sync and a position check, say) must draw from one budget. The
limiter spaces requests evenly (a burst of one): at 4/s the 20th request starts 4.75 s
after the first, never four at once up front, which is what keeps a store under the
per-second limit at every instant rather than on average.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart, across threads (burst of one).

    Each call reserves the next free slot under a lock and then sleeps outside it, so
    waiting threads do not block one another's reservations and slots are handed out in
    arrival order.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        self._rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # The earliest time the next call may start; in the past means "now".
        self._next_slot = float("-inf")

    @property
    def rate(self) -> float:
        """Requests per second this limiter allows."""
        return self._rate

    def slow_to(self, rate: float) -> None:
        """Lower the rate to ``rate`` if it is below the current one (never raises it)."""
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        with self._lock:
            self._rate = min(self._rate, float(rate))

    def reserve(self) -> float:
        """Claim the next slot and return the clock time at which it starts."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self._rate
            return slot

    def acquire(self) -> float:
        """Block until this caller may make a request; return the seconds waited."""
        slot = self.reserve()
        start = self._clock()
        now = start
        # Loop because a sleep may return a hair early against a different clock.
        while now < slot:
            self._sleep(slot - now)
            now = self._clock()
        return now - start


_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def shared_limiter(key: str, rate: float) -> RateLimiter:
    """The process-wide limiter for ``key`` (a store identifier), created on first use.

    When two configurations of one store ask for different rates, the limiter keeps
    the lower one: the server's limit is per store, so the stricter setting must hold
    for every caller.
    """
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = RateLimiter(rate)
            _registry[key] = limiter
            return limiter
    if rate < limiter.rate:
        logger.info(
            "store %s: request rate lowered from %.3g/s to %.3g/s for every client of the store",
            key,
            limiter.rate,
            rate,
        )
        limiter.slow_to(rate)
    return limiter
