"""What one client's requests came to: the outcome of each request, counted."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields, replace
from typing import Literal, get_args

Outcome = Literal[
    "ok",
    "server_error",
    "timeout",
    "connection_error",
    "rate_limited",
    "auth_error",
    "malformed",
    "too_large",
    "http_error",
]
"""What one HTTP request came to. ``http_error`` is any other unexpected status (404, 3xx)."""


@dataclass
class RequestStats:
    """HTTP requests made by a client, counted by outcome, plus the retries among them.

    ``total`` is every request sent (the API calls a run reports). Take a ``snapshot()``
    before a run and subtract it afterwards to get that run's share.
    """

    ok: int = 0
    server_error: int = 0
    timeout: int = 0
    connection_error: int = 0
    rate_limited: int = 0
    auth_error: int = 0
    malformed: int = 0
    too_large: int = 0
    http_error: int = 0
    retries: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def total(self) -> int:
        """Every HTTP request made, whatever its outcome."""
        return sum(getattr(self, name) for name in get_args(Outcome))

    @property
    def pages(self) -> int:
        """Pages fetched and parsed successfully (the ``ok`` requests)."""
        return self.ok

    def record(self, outcome: Outcome) -> None:
        """Count one request with ``outcome``."""
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def record_retry(self) -> None:
        """Count one retry (a request about to be repeated)."""
        with self._lock:
            self.retries += 1

    def snapshot(self) -> RequestStats:
        """A copy of the counts as they are now, unaffected by later requests."""
        with self._lock:
            return replace(self)

    def __sub__(self, other: RequestStats) -> RequestStats:
        """The requests made between ``other`` (an earlier snapshot) and ``self``."""
        return RequestStats(
            **{name: getattr(self, name) - getattr(other, name) for name in _COUNTERS}
        )

    def as_dict(self) -> dict[str, int]:
        """The counts and the total, e.g. for run metadata."""
        snap = self.snapshot()
        counts = {name: getattr(snap, name) for name in _COUNTERS}
        counts["total"] = snap.total
        return counts


_COUNTERS = tuple(f.name for f in fields(RequestStats) if f.init)
