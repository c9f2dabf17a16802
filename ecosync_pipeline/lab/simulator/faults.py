"""The switches a test or a benchmark turns on, per store, and the request counters.

Two ways to make a store misbehave, which combine:

- rates (0..1), drawn from a seeded generator per store: ``rate_limit_rate``,
  ``unavailable_rate``, ``timeout_rate``, ``malformed_rate`` decide how a request
  fails; ``arrival_rate``, ``deletion_rate``, ``status_change_rate`` make the store
  change under the client (one new order, one deletion, one status change per hit);
  ``large_order_rate`` makes a share of the new orders wholesale orders of
  ``large_order_lines`` item lines (about 110 bytes a line: 3,000 lines pass a webhook
  receiver's 256 KiB body limit);
- a queue of scripted failures, ``fail_next(n, kind)``: the next n requests fail with
  ``kind`` whatever the rates say, then the store answers normally again.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from ecosync_pipeline.lab.simulator.spec import SimulatorError
from ecosync_pipeline.lab.simulator.windows import FixedWindows

Outcome = Literal[
    "ok",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "unavailable",
    "server_error",
    "timeout",
    "malformed",
    "not_found",
    "invalid",
]
"""How the simulator answered one orders request (the keys of request counts)."""

FailKind = Literal[
    "rate_limited",
    "rate_limited_no_retry_after",
    "unavailable",
    "server_error",
    "timeout",
    "malformed_data",
    "malformed_id",
    "unauthorized",
    "forbidden",
]
"""What a scripted failure (fail_next) does to a request."""

MalformedKind = Literal["data_not_list", "missing_id"]

OUTCOMES: tuple[str, ...] = get_args(Outcome)
FAIL_KINDS: tuple[str, ...] = get_args(FailKind)

FAIL_OUTCOME: dict[str, str] = {
    "rate_limited": "rate_limited",
    "rate_limited_no_retry_after": "rate_limited",
    "unavailable": "unavailable",
    "server_error": "server_error",
    "timeout": "timeout",
    "malformed_data": "malformed",
    "malformed_id": "malformed",
    "unauthorized": "unauthorized",
    "forbidden": "forbidden",
}


@dataclass(frozen=True)
class Faults:
    """The fault switches of one store; the defaults are a well-behaved server."""

    latency_ms: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int | None = 1
    """Seconds sent in Retry-After with a 429; None sends no Retry-After header."""
    max_requests_per_second: float | None = None
    """Answer 429 (Retry-After: 1) beyond this many requests in any second."""
    unavailable_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 5.0
    """How long a 'timed out' request sleeps before answering: more than the client waits."""
    malformed_rate: float = 0.0
    malformed_kind: MalformedKind = "data_not_list"
    arrival_rate: float = 0.0
    deletion_rate: float = 0.0
    status_change_rate: float = 0.0
    swap_rate: float = 0.0
    """Per request: delete one random order and add one at the same instant."""
    status_flow_rate: float = 0.0
    """Share of the open orders moving one state on each simulated minute."""
    large_order_rate: float = 0.0
    """Share of new orders (however created) that are wholesale orders of
    ``large_order_lines`` item lines: bodies larger than a receiver may accept."""
    large_order_lines: int = 3000
    time_scale: float = 1.0
    """Simulated seconds per real second (status flow; 60 makes a minute a second)."""
    rate_windows: bool = False
    """Enforce the four windows below (429 with Retry-After for the fullest full window)."""
    limit_per_second: int | None = 5
    limit_per_minute: int | None = 50
    limit_per_hour: int | None = 1000
    limit_per_day: int | None = 10000
    """The contract's windows; None leaves a window unlimited. time_scale shortens them."""
    check_token: bool = True
    cursor_mode: bool = True
    """Serve ``sort_direction``/``cursor`` reads; off, they are ignored (ascending pages)."""
    sort_mode: bool = True
    """Serve ``sort=-id`` and ``created_at_from``; off, they are ignored."""

    def updated(self, **switches: Any) -> Faults:
        """A copy with some switches changed; unknown names and bad values raise."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(switches) - names)
        if unknown:
            raise SimulatorError(
                f"unknown fault switch {', '.join(unknown)}; use {', '.join(sorted(names))}"
            )
        new = replace(self, **switches)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise SimulatorError on an out-of-range value."""
        for name in (
            "rate_limit_rate",
            "unavailable_rate",
            "timeout_rate",
            "malformed_rate",
            "arrival_rate",
            "deletion_rate",
            "status_change_rate",
            "swap_rate",
            "status_flow_rate",
            "large_order_rate",
        ):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value <= 1:
                raise SimulatorError(f"fault switch {name} must be a rate in [0, 1], got {value!r}")
        for name in ("latency_ms", "timeout_seconds"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise SimulatorError(f"fault switch {name} must be a number >= 0, got {value!r}")
        if self.retry_after is not None and (
            not isinstance(self.retry_after, int)
            or isinstance(self.retry_after, bool)
            or self.retry_after < 0
        ):
            raise SimulatorError(
                "fault switch retry_after must be whole seconds >= 0 or "
                f"None (no header), got {self.retry_after!r}"
            )
        if not _number(self.time_scale) or not self.time_scale > 0:
            raise SimulatorError(f"fault switch time_scale must be > 0, got {self.time_scale!r}")
        rps = self.max_requests_per_second
        if rps is not None and (not _number(rps) or rps <= 0):
            raise SimulatorError(
                f"fault switch max_requests_per_second must be > 0 or None, got {rps!r}"
            )
        if self.malformed_kind not in get_args(MalformedKind):
            raise SimulatorError(
                "fault switch malformed_kind must be one of "
                f"{', '.join(get_args(MalformedKind))}, "
                f"got {self.malformed_kind!r}"
            )
        if not _whole(self.large_order_lines) or self.large_order_lines < 1:
            raise SimulatorError(
                "fault switch large_order_lines must be a whole number >= 1, "
                f"got {self.large_order_lines!r}"
            )
        for name in ("limit_per_second", "limit_per_minute", "limit_per_hour", "limit_per_day"):
            value = getattr(self, name)
            if value is not None and (not _whole(value) or value < 1):
                raise SimulatorError(
                    f"fault switch {name} must be a whole number >= 1 or None, got {value!r}"
                )
        for name in ("check_token", "cursor_mode", "sort_mode", "rate_windows"):
            if not isinstance(getattr(self, name), bool):
                raise SimulatorError(
                    f"fault switch {name} must be true or false, got {getattr(self, name)!r}"
                )

    def as_dict(self) -> dict[str, Any]:
        """The switches as JSON-ready values."""
        return asdict(self)

    def window_limits(self) -> dict[str, int | None]:
        """The rate-limit windows by name (second, minute, hour, day) and their limits."""
        return {
            "second": self.limit_per_second,
            "minute": self.limit_per_minute,
            "hour": self.limit_per_hour,
            "day": self.limit_per_day,
        }


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RequestRecord:
    """One orders request as the simulator saw it."""

    page: int
    per_page: int
    outcome: str
    orders: int
    at: float
    mode: str = "pages"
    """How the store was read: pages, pages_desc, cursor or order (see reading.ReadMode)."""


class FaultState:
    """A store's switches, scripted failures, rate window and request counters."""

    LOG_SIZE = 10_000

    def __init__(self, seed: int) -> None:
        self.faults = Faults()
        self.scripted: deque[str] = deque()
        self.rng = random.Random(seed)
        self.window: deque[float] = deque()
        self.counts: Counter[str] = Counter()
        self.log: deque[RequestRecord] = deque(maxlen=self.LOG_SIZE)
        self.windows = FixedWindows()

    def fail_next(self, n: int, kind: str) -> None:
        """Queue ``n`` failures of ``kind`` for the next requests."""
        if kind not in FAIL_KINDS:
            raise SimulatorError(
                f"unknown failure kind {kind!r}; use one of {', '.join(FAIL_KINDS)}"
            )
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SimulatorError(f"fail_next needs a count >= 0, got {n!r}")
        self.scripted.extend([kind] * n)

    def draw_failure(self) -> str | None:
        """The failure this request suffers, if any (scripted first, then limits, rates)."""
        if self.scripted:
            return self.scripted.popleft()
        f = self.faults
        if f.max_requests_per_second is not None:
            now = time.monotonic()
            while self.window and self.window[0] <= now - 1.0:
                self.window.popleft()
            if len(self.window) >= f.max_requests_per_second:
                return "rate_limited_window"
            self.window.append(now)
        rng = self.rng
        if f.rate_limit_rate and rng.random() < f.rate_limit_rate:
            return "rate_limited"
        if f.unavailable_rate and rng.random() < f.unavailable_rate:
            return "unavailable"
        if f.timeout_rate and rng.random() < f.timeout_rate:
            return "timeout"
        if f.malformed_rate and rng.random() < f.malformed_rate:
            return "malformed_data" if f.malformed_kind == "data_not_list" else "malformed_id"
        return None

    def churn(self) -> tuple[bool, bool, bool, bool]:
        """(add one order, delete one, change one status, swap one) for this request."""
        f, rng = self.faults, self.rng
        return (
            bool(f.arrival_rate) and rng.random() < f.arrival_rate,
            bool(f.deletion_rate) and rng.random() < f.deletion_rate,
            bool(f.status_change_rate) and rng.random() < f.status_change_rate,
            bool(f.swap_rate) and rng.random() < f.swap_rate,
        )

    def record(
        self, page: int, per_page: int, outcome: str, orders: int, mode: str = "pages"
    ) -> None:
        """Count one request and keep it in the (bounded) log."""
        self.counts[outcome] += 1
        self.counts["total"] += 1
        self.log.append(RequestRecord(page, per_page, outcome, orders, time.time(), mode))

    def stats(self) -> dict[str, int]:
        """Request counts by outcome, every outcome present, plus 'total'."""
        return {"total": self.counts["total"], **{o: self.counts[o] for o in OUTCOMES}}

    def reset_counts(self) -> None:
        """Forget the counts, the log and the rate windows (the switches stay)."""
        self.counts.clear()
        self.log.clear()
        self.windows.reset()
