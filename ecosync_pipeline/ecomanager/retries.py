"""How a client waits and retries, and the HTTP connection settings every client shares.

    Retries.after(failure, attempt)   seconds to wait before the next attempt: exponential
                                      backoff with equal jitter, never less than the
                                      server's Retry-After
    Retries.too_long(failure)         the server asks for more than a client waits
                                      (retry_after_cap): the client stops instead
    Retries.retry_after(header)       a Retry-After header (seconds or an HTTP date) read
    tls_context(), proxies_configured()   read once per process, not once per client

What a failure means (which statuses are retried at all) is the client's call
(client.py); this module only times the retries.
"""

from __future__ import annotations

import math
import random
import ssl
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cache

import httpx

from ecosync_pipeline.ecomanager.stats import Outcome


@dataclass(frozen=True)
class Failure:
    """A transient failure of one attempt: what happened and how long the server asks us
    to wait (None when it did not say)."""

    outcome: Outcome
    reason: str
    server_wait: float | None


@dataclass(frozen=True)
class Retries:
    """The retry timing of one client; every duration in seconds."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0
    default_retry_after: float = 2.0
    """The wait after a 429 that names no Retry-After."""
    random: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        check_seconds(
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            retry_after_cap=self.retry_after_cap,
            default_retry_after=self.default_retry_after,
        )

    @property
    def attempts(self) -> int:
        """Requests made for one page at most: the first and its retries."""
        return self.max_retries + 1

    def retry_after(self, header: str | None) -> float | None:
        """Seconds a Retry-After header asks for (delta or HTTP date); None if unusable.

        Not capped: a wait longer than the cap is not shortened (the retry would only earn
        another refusal) but refused by the client, which stops the run saying when.
        """
        if header is None:
            return None
        try:
            seconds = float(header.strip())
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        if not math.isfinite(seconds):
            return None
        return max(seconds, 0.0)

    def too_long(self, failure: Failure) -> bool:
        """Whether the server asks for a longer wait than a client waits (``retry_after_cap``)."""
        return failure.server_wait is not None and failure.server_wait > self.retry_after_cap

    def after(self, failure: Failure, attempt: int) -> float:
        """Seconds to wait before the next attempt, after ``attempt`` failed: never less
        than the server asked (the client refuses a wait that is ``too_long``)."""
        if failure.outcome == "rate_limited":
            # The server said how long; waiting less only earns another 429.
            assert failure.server_wait is not None
            return failure.server_wait
        # The exponent is capped so a large max_retries cannot overflow a float.
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 60))
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero, and
        # the rest random, so clients that failed together do not retry together.
        wait = delay / 2 + self.random.uniform(0, delay / 2)
        if failure.server_wait is not None:
            wait = max(wait, failure.server_wait)
        return wait


def check_seconds(**seconds: float) -> None:
    """Refuse a duration that is negative, infinite or NaN."""
    for name, value in seconds.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")


@cache
def tls_context() -> ssl.SSLContext:
    """The certificate-verifying TLS context every client shares (httpx's default one).

    Building it loads the CA bundle, about 20 ms: once per client that was most of an
    idle store's sync, and a run of a thousand stores makes a client per store.
    """
    return httpx.create_ssl_context()


@cache
def proxies_configured() -> bool:
    """Whether a proxy is configured (HTTPS_PROXY and the like, or the system's), read once.

    httpx reads them for every client it builds, walking every variable: with a thousand
    stores' tokens in the environment that was about 7 ms a client. Where none is set,
    clients are built without reading the environment (``verify`` is given explicitly,
    and the token is ours, so nothing else there applies).
    """
    return bool(urllib.request.getproxies())
