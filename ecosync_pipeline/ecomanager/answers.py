"""Reading EcoManager's answers: the body within its cap, the status judged, the JSON parsed.

Every error raised here is one of ours (errors.py), its message redacted and naming the
store and the page (or order) asked for; a transient failure (429, 5xx) is returned as
a ``Failure`` for the client's retries instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.ecomanager.retries import Failure, Retries
from ecosync_pipeline.ecomanager.stats import Outcome, RequestStats
from ecosync_pipeline.errors import (
    ApiAuthError,
    ApiError,
    ApiRateLimited,
    ApiUnavailable,
    MalformedPage,
    ResponseTooLarge,
    ServerHoldOff,
)
from ecosync_pipeline.redact import Redactor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ask:
    """One request of the contract: where it goes, its name in messages, how its body reads."""

    url: str
    params: Mapping[str, str | int]
    where: str
    """"page 3", "order 4512": what messages call it."""
    page: int | None
    order_id: int | None
    parse: Callable[[object, datetime], Page | Order]
    missing_ok: bool = False
    """A 404 is an answer (the order is gone), not an error."""


@dataclass
class Answers:
    """How one store's client reads and judges what EcoManager answered."""

    store: Store
    stats: RequestStats
    redact: Redactor
    retries: Retries
    max_bytes: int

    def read_capped(self, response: httpx.Response, ask: Ask) -> bytes:
        """The (decoded) body, read chunk by chunk; ResponseTooLarge past ``max_page_bytes``.

        Counting decoded bytes also bounds a compressed body that inflates without end.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            self.too_large(ask, f"it declares {int(declared):,} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                self.too_large(ask, f"more than {self.max_bytes:,} bytes arrived")
            chunks.append(chunk)
        return b"".join(chunks)

    def too_large(self, ask: Ask, what: str) -> None:
        self.stats.record("too_large")
        sid = self.store.identifier
        raise self.error(
            ResponseTooLarge,
            f"store {sid}: {ask.where}: the response is larger than the store's cap of "
            f"{self.max_bytes:,} bytes ({what}); it was not read. If the store's orders are "
            f"really that large, raise max_page_bytes for store {sid} in the stores file, "
            "or lower per_page",
            ask,
        )

    def error(self, cls: type[ApiError], message: str, ask: Ask) -> ApiError:
        """Our error ``cls`` with ``message`` redacted, naming the store and page (or order)."""
        return cls(
            self.redact(message),
            store=self.store.identifier,
            page=ask.page,
            order_id=ask.order_id,
        )

    def refused(self, outcome: Outcome, cls: type[ApiError], message: str, ask: Ask) -> ApiError:
        """Count ``outcome`` and return the error for a request no retry can fix."""
        self.stats.record(outcome)
        return self.error(cls, message, ask)

    def judge(self, response: httpx.Response, ask: Ask) -> Failure | None:
        """None for a 2xx; a retryable Failure for 429/5xx; raise for anything else."""
        status = response.status_code
        sid = self.store.identifier
        if 200 <= status < 300:
            return None
        if status in (401, 403):
            self.stats.record("auth_error")
            what = (
                "the token was missing or malformed" if status == 401 else "the token was refused"
            )
            raise self.error(
                ApiAuthError,
                f"store {sid}: {ask.where}: HTTP {status}, {what}; check the store's token "
                f"in {self.store.token_source.describe()} (it must hold this store's "
                "current 80-character EcoManager token)",
                ask,
            )
        if status == 429:
            self.stats.record("rate_limited")
            header = response.headers.get("Retry-After")
            wait = self.retries.retry_after(header)
            shown = "absent" if header is None else repr(header[:40])
            return Failure(
                "rate_limited",
                f"rate limited (HTTP 429, Retry-After {shown})",
                self.retries.default_retry_after if wait is None else wait,
            )
        if status >= 500:
            self.stats.record("server_error")
            return Failure(
                "server_error",
                f"HTTP {status}",
                self.retries.retry_after(response.headers.get("Retry-After")),
            )
        self.stats.record("http_error")
        hint = ""
        if 300 <= status < 400:
            hint = f" (redirect to {response.headers.get('Location', '?')[:200]!r})"
        raise self.error(
            ApiError,
            f"store {sid}: {ask.where}: unexpected HTTP {status}{hint} from "
            f"{ask.url}; check the store's base_url in the stores file",
            ask,
        )

    def parse(
        self, response: httpx.Response, body: bytes, ask: Ask, sent_at: datetime
    ) -> Page | Order:
        """Decode and validate a 2xx body, counting it as ok or malformed."""
        sid = self.store.identifier
        remedy = (
            f"{self.store.base_url} breaks the EcoManager orders contract; fix the "
            "server or the store's base_url, then rerun"
        )
        try:
            payload = json.loads(body)
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; a body nested deeper than
        # the interpreter's recursion limit makes the json module raise RecursionError.
        except (ValueError, RecursionError) as exc:
            self.stats.record("malformed")
            content_type = response.headers.get("Content-Type", "none")
            # Not response.text: the charset the server declares may be what is broken
            # (a UTF-16 body without its BOM raises UnicodeError while decoding).
            snippet = body[:80].decode("utf-8", "replace")
            raise self.error(
                MalformedPage,
                f"store {sid}: {ask.where}: response body is not JSON "
                f"(HTTP {response.status_code}, Content-Type {content_type[:80]!r}, "
                f"body starts {snippet!r}); {remedy}",
                ask,
            ) from self.cause(exc)
        try:
            result = ask.parse(payload, sent_at)
        except MalformedPage as exc:
            self.stats.record("malformed")
            raise self.error(MalformedPage, f"{exc}; {remedy}", ask) from self.cause(exc)
        # The model reads each field defensively; anything left is still this page's fault.
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            self.stats.record("malformed")
            raise self.error(
                MalformedPage,
                f"store {sid}: {ask.where}: the answer could not be read "
                f"({type(exc).__name__}); {remedy}",
                ask,
            ) from None
        self.stats.record("ok")
        logger.debug("store %s: %s read", sid, ask.where)
        return result

    def exhausted(self, failure: Failure, ask: Ask, attempts: int) -> ApiError:
        """The error for a request whose every attempt failed transiently."""
        sid = self.store.identifier
        if failure.outcome == "rate_limited":
            return self.error(
                ApiRateLimited,
                f"store {sid}: {ask.where}: still rate limited (HTTP 429) after {attempts} "
                f"attempts; lower requests_per_second for store {sid} in the stores file, or "
                "wait a while and rerun",
                ask,
            )
        return self.error(
            ApiUnavailable,
            f"store {sid}: {ask.where}: EcoManager unavailable after {attempts} "
            f"attempts (last: {failure.reason}); check that {self.store.base_url} "
            "is up and reachable, then rerun the store's sync",
            ask,
        )

    def held_off(self, failure: Failure, ask: Ask, wait: float, why: str) -> ServerHoldOff:
        """The stop for a wait the run will not sleep: the store, the page and when to retry."""
        retry_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
        sid = self.store.identifier
        message = (
            f"store {sid}: {ask.where}: {failure.reason}; the next attempt is due at "
            f"{retry_at:%Y-%m-%d %H:%M:%S} UTC, {why}, so it is not made now: the next "
            "run after then continues from the position saved so far"
        )
        return ServerHoldOff(self.redact(message), store=sid, page=ask.page, retry_at=retry_at)

    def cause(self, exc: Exception | None) -> Exception | None:
        """``exc`` to chain from, or None when its text carries a run of a secret (a server
        echoing it back), so a printed traceback cannot leak it either."""
        if exc is not None and self.redact(str(exc)) != str(exc):
            return None
        return exc
