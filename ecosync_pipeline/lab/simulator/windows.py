"""The contract's four rate-limit windows, enforced per store the way Laravel does.

EcoManager limits each store (each token) to about 5 requests a second, 50 a minute,
1,000 an hour and 10,000 a day. Laravel's throttle keeps one counter per window that
starts with the first request after the previous window expired (a fixed window, not
aligned to the clock); a request is refused with 429 when any window is full, and a
refused request counts in none of them. Retry-After says when the fullest window
reopens. ``time_scale`` shortens every window (60: a minute lasts a second), so a test
sees the day window in seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

WINDOW_SECONDS: dict[str, float] = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
}
"""Each window's name and its length in (unscaled) seconds."""


@dataclass(frozen=True)
class Refusal:
    """A request refused by a full window: which one, and the seconds until it reopens."""

    window: str
    retry_after: float

    def header(self, time_scale: float) -> str:
        """Retry-After as sent: whole seconds (rounded up), or milliseconds' precision when
        the windows are scaled (a shortened window reopens in a fraction of a second)."""
        if time_scale == 1:
            return str(max(1, math.ceil(self.retry_after)))
        return f"{max(0.001, self.retry_after):.3f}"


class FixedWindows:
    """One store's window counters, and how many requests each window refused."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._count: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def _expire(self, now: float, time_scale: float) -> None:
        for name, seconds in WINDOW_SECONDS.items():
            start = self._start.get(name)
            if start is not None and now >= start + seconds / time_scale:
                del self._start[name]
                self._count[name] = 0

    def hit(self, now: float, limits: dict[str, int | None], time_scale: float) -> Refusal | None:
        """Count one request at ``now``, or refuse it (counting it nowhere)."""
        self._expire(now, time_scale)
        full = [
            Refusal(name, self._start[name] + WINDOW_SECONDS[name] / time_scale - now)
            for name, limit in limits.items()
            if limit is not None and name in self._start and self._count[name] >= limit
        ]
        if full:
            refusal = max(full, key=lambda r: r.retry_after)
            self.refused[refusal.window] += 1
            return refusal
        for name, limit in limits.items():
            if limit is not None:
                self._start.setdefault(name, now)
                self._count[name] += 1
        return None

    def remaining(self, limits: dict[str, int | None]) -> int | None:
        """Requests left in the tightest window (None when no window is limited)."""
        left = [limit - self._count[name] for name, limit in limits.items() if limit is not None]
        return max(0, min(left)) if left else None

    def usage(
        self, now: float, limits: dict[str, int | None], time_scale: float
    ) -> dict[str, dict[str, Any]]:
        """Per window: its limit, requests counted, refused, and seconds until it resets."""
        self._expire(now, time_scale)
        out: dict[str, dict[str, Any]] = {}
        for name, seconds in WINDOW_SECONDS.items():
            start = self._start.get(name)
            out[name] = {
                "limit": limits.get(name),
                "used": self._count[name],
                "refused": self.refused[name],
                "resets_in": None if start is None else start + seconds / time_scale - now,
            }
        return out

    def reset(self) -> None:
        """Forget every window and the refusal counts."""
        self._start.clear()
        self._count.clear()
        self.refused.clear()
