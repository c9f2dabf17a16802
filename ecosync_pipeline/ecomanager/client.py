"""The EcoManager HTTP client for one store: one page per call, retried, rate limited.

Failures are sorted once, here, into the errors the rest of ecosync handles:

- 5xx, timeouts and connection errors are transient: retried with exponential backoff
  and jitter, then ``ApiUnavailable``.
- 429 waits for ``Retry-After``, then ``ApiRateLimited`` when it persists.
- A wait the server asks for (429 or 5xx) that is longer than ``retry_after_cap``, or
  any wait that would end past the run's ``time_limit``, is not slept:
  ``ServerHoldOff`` names when to retry, and the run stops after its last commit.
- 401 and 403 are never retried: ``ApiAuthError`` points at the store's token variable.
- A body that is not JSON, or breaks the contract, is ``MalformedPage`` and not retried:
  re-reading the same bad page would not fix it.
- A body is streamed and read up to the store's ``max_page_bytes``; a larger one is
  ``ResponseTooLarge``, and the rest of it is never read.

The token goes into the Authorization header and nowhere else: every message built
from server or library text goes through a Redactor, which blanks any 8 consecutive
characters of the token (or of a URL's password), before it is raised or logged, and
a library exception whose text holds such a run is not chained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import httpx

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.config import MAX_PER_PAGE, Store, check_base_url
from ecosync_pipeline.ecomanager.answers import Answers, Ask
from ecosync_pipeline.ecomanager.budget import shared_budget
from ecosync_pipeline.ecomanager.limiter import Limiter
from ecosync_pipeline.ecomanager.models import (
    Order,
    Page,
    parse_newest_page,
    parse_order,
    parse_page,
)
from ecosync_pipeline.ecomanager.retries import (
    Failure,
    Retries,
    check_seconds,
    proxies_configured,
    tls_context,
)
from ecosync_pipeline.ecomanager.stats import RequestStats
from ecosync_pipeline.errors import (
    ApiError,
    CallCapReached,
    ConfigError,
    MalformedPage,
    MissingToken,
)
from ecosync_pipeline.redact import Redactor, quiet_request_log, url_secrets

logger = logging.getLogger(__name__)

ORDERS_PATH = "/api/shop/v2/orders"
USER_AGENT = "ecosync/0.1"


GONE = None
"""What ``fetch_order`` returns for an order EcoManager answers 404 for."""


class EcoManagerClient(Closing):
    """Fetches pages of one store's orders from EcoManager (satisfies ``PageFetcher``)."""

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
        default_retry_after: float = 2.0,
        rate_limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_page_bytes: int | None = None,
    ) -> None:
        _check_token(store, token)
        try:
            check_base_url(store.base_url)
        except ConfigError as exc:
            raise ConfigError(f"store {store.identifier}: {exc}") from None
        self._retries = Retries(
            max_retries, backoff_base, backoff_max, retry_after_cap, default_retry_after
        )
        _check_timeout(timeout)
        self._store = store
        self._redact = Redactor([token, *url_secrets(store.base_url)])
        self._max_bytes = store.max_page_bytes if max_page_bytes is None else max_page_bytes
        if self._max_bytes < 1:
            raise ValueError(f"max_page_bytes must be at least 1, got {self._max_bytes}")
        self._timeout = timeout
        self._sleep = sleep
        self._url = f"{store.base_url.rstrip('/')}{ORDERS_PATH}"
        # By default every client of a store, in every process, shares its rate budget.
        self._limiter = rate_limiter or shared_budget(store)
        self._stats = RequestStats()
        self._answers = Answers(store, self._stats, self._redact, self._retries, self._max_bytes)
        self._cap: int | None = None
        self._deadline: float | None = None
        self._page_listeners: list[Callable[[Page], None]] = []
        quiet_request_log()  # httpx logs each URL; a cursor in it is the server's base64
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            # A redirect is reported, not followed: it means base_url is out of date.
            follow_redirects=False,
            verify=tls_context(),
            trust_env=proxies_configured(),
        )

    @classmethod
    def from_store(
        cls,
        store: Store,
        environ: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> EcoManagerClient:
        """A client for ``store`` with its token read now (from its variable or its file).

        Raises MissingToken (naming the variable) when it is unset, SecretFileError
        (naming the file) when its file cannot give it.
        """
        return cls(store, store.token(environ), **kw)

    @property
    def store(self) -> Store:
        """The store this client reads."""
        return self._store

    @property
    def stats(self) -> RequestStats:
        """Live request counts for this client (snapshot it to diff a run)."""
        return self._stats

    @property
    def rate_limiter(self) -> Limiter:
        """The limiter every request of this client waits on (shared per store by default)."""
        return self._limiter

    def __repr__(self) -> str:
        return f"EcoManagerClient(store={self._store.identifier!r}, url={self._url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def on_page(self, listener: Callable[[Page], None]) -> None:
        """Call ``listener`` with every page ``fetch_page`` returns from now on."""
        self._page_listeners.append(listener)

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        """Fetch page ``page`` (1-based) with ``per_page`` orders (default the store's, max 100).

        Raises ApiAuthError, ApiRateLimited, ApiUnavailable, MalformedPage or ApiError,
        each naming the store and page.
        """
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValueError(
                f"store {self._store.identifier}: page must be an integer >= 1, got {page!r}"
            )
        size = self._store.per_page if per_page is None else per_page
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(
                f"store {self._store.identifier}: per_page must be an integer >= 1, got {size!r}"
            )
        # Servers refuse more than 100 a page; asking for less keeps the contract.
        size = min(size, MAX_PER_PAGE)
        sid = self._store.identifier
        ask = Ask(
            self._url,
            {"page": page, "per_page": size},
            f"page {page}",
            page,
            None,
            lambda payload, at: parse_page(
                payload, store=sid, page=page, per_page=size, fetched_at=at
            ),
        )
        answer = self._fetch(ask)
        assert isinstance(answer, Page)
        for listener in self._page_listeners:
            listener(answer)
        return answer

    def fetch_newest(self, cursor: str | None = None, *, number: int = 1) -> Page:
        """One page of the newest-first keyset cursor read, 100 orders, as an ascending Page.

        ``cursor`` is the previous page's ``next_cursor`` (None for the newest page);
        ``number`` counts the pages of this read, for errors and logs. Only for stores
        whose ``read_mode`` is ``cursor``: a server of the contract may not support it.
        """
        params: dict[str, str | int] = {"per_page": MAX_PER_PAGE, "sort_direction": "desc"}
        if cursor is not None:
            params["cursor"] = cursor
        sid = self._store.identifier
        ask = Ask(
            self._url,
            params,
            f"page {number}",
            number,
            None,
            lambda payload, at: parse_newest_page(
                payload, store=sid, number=number, per_page=MAX_PER_PAGE, fetched_at=at
            ),
        )
        answer = self._fetch(ask)
        assert isinstance(answer, Page)
        return answer

    def fetch_order(self, order_id: int) -> Order | None:
        """One order as EcoManager holds it now (``GET /orders/{id}``); None when it answers 404.

        The merge rule asks this when two states of an order carry the same ``updated_at``
        (EcoManager's timestamps have seconds). Raises as ``fetch_page`` does, naming the
        order.
        """
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 1:
            raise ValueError(
                f"store {self._store.identifier}: order id must be an integer >= 1, "
                f"got {order_id!r}"
            )
        sid = self._store.identifier
        ask = Ask(
            f"{self._url}/{order_id}",
            {},
            f"order {order_id}",
            None,
            order_id,
            lambda payload, at: parse_order(payload, store=sid, order_id=order_id, fetched_at=at),
            missing_ok=True,
        )
        answer = self._fetch(ask)
        assert answer is GONE or isinstance(answer, Order)
        return answer

    @contextmanager
    def call_cap(self, calls: int | None) -> Iterator[None]:
        """Within the block, refuse (CallCapReached) any request past ``calls`` more.

        Every HTTP request counts, retries included, so a run given N calls spends at most
        N. None: no cap.
        """
        previous = self._cap
        if calls is not None:
            mine = self._stats.total + max(0, calls)
            self._cap = mine if previous is None else min(previous, mine)
        try:
            yield
        finally:
            self._cap = previous

    @contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        """Within the block, no wait between attempts ends more than ``seconds`` from now:
        such a wait raises ServerHoldOff (naming when) instead. None: no limit."""
        previous = self._deadline
        if seconds is not None:
            mine = time.monotonic() + seconds
            self._deadline = mine if previous is None else min(previous, mine)
        try:
            yield
        finally:
            self._deadline = previous

    def _held_off(self, failure: Failure, wait: float) -> str | None:
        """Why ``wait`` is not to be slept (longer than a client waits, or past the time
        limit), or None when it is."""
        if self._retries.too_long(failure):
            return f"longer than the {self._retries.retry_after_cap:g} s a client waits"
        if self._deadline is not None and time.monotonic() + wait > self._deadline:
            return "after this run's time budget ends"
        return None

    def _fetch(self, ask: Ask) -> Page | Order | None:
        """One request, with the retries, waits and errors of the contract."""
        attempts = self._retries.attempts
        for attempt in range(1, attempts + 1):
            if self._cap is not None and self._stats.total >= self._cap:
                raise CallCapReached(
                    f"store {self._store.identifier}: {ask.where}: not requested, this run's "
                    "call cap is spent; the next run carries on",
                    store=self._store.identifier,
                    page=ask.page,
                    order_id=ask.order_id,
                )
            self._limiter.acquire()
            outcome = self._attempt(ask)
            if not isinstance(outcome, tuple):
                return outcome
            failure, cause = outcome
            wait = self._retries.after(failure, attempt)
            why = self._held_off(failure, wait)
            if why is not None:
                raise self._answers.held_off(failure, ask, wait, why)
            if attempt == attempts:
                break
            self._stats.record_retry()
            logger.warning(
                "store %s: %s: %s on attempt %d of %d; retrying in %.2f s",
                self._store.identifier,
                ask.where,
                self._redact(failure.reason),
                attempt,
                attempts,
                wait,
            )
            self._sleep(wait)
        raise self._answers.exhausted(failure, ask, attempts) from self._answers.cause(cause)

    def _attempt(self, ask: Ask) -> Page | Order | None | tuple[Failure, Exception | None]:
        """One request: the answer, or a transient failure (and its cause) to retry.

        Anything that no retry can fix is raised at once as our error.
        """
        sid = self._store.identifier
        request = self._http.build_request("GET", ask.url, params=dict(ask.params))
        # What was read is EcoManager's state as of this moment, or later.
        sent_at = datetime.now(timezone.utc)
        try:
            response = self._http.send(request, stream=True)
            try:
                if ask.missing_ok and response.status_code == 404:
                    self._stats.record("ok")
                    return GONE
                failure = self._answers.judge(response, ask)
                body = self._answers.read_capped(response, ask) if failure is None else b""
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            self._stats.record("timeout")
            reason = f"no answer within {self._timeout:g} s ({type(exc).__name__})"
            return Failure("timeout", reason, None), exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            self._stats.record("connection_error")
            reason = f"connection error ({type(exc).__name__}: {exc})"
            return Failure("connection_error", reason, None), exc
        except httpx.DecodingError as exc:
            raise self._answers.refused(
                "malformed",
                MalformedPage,
                f"store {sid}: {ask.where}: the response body could not be decoded ({exc}); "
                f"check that {self._store.base_url} serves the EcoManager orders API",
                ask,
            ) from self._answers.cause(exc)
        except httpx.InvalidURL as exc:
            # httpx builds a redirect's next request even when it does not follow it: a
            # Location it cannot parse raises before the status can be judged.
            raise self._answers.refused(
                "http_error",
                ApiError,
                f"store {sid}: {ask.where}: a redirect to a malformed Location ({exc}) from "
                f"{ask.url}; check the store's base_url in the stores file",
                ask,
            ) from self._answers.cause(exc)
        except httpx.RequestError as exc:
            # UnsupportedProtocol, LocalProtocolError: the request itself is wrong.
            raise self._answers.refused(
                "connection_error",
                ApiError,
                f"store {sid}: {ask.where}: the request could not be sent "
                f"({type(exc).__name__}: {exc}); check the store's base_url and token in "
                "the stores file and environment",
                ask,
            ) from self._answers.cause(exc)
        if failure is not None:
            return failure, None
        return self._answers.parse(response, body, ask, sent_at)


def _check_token(store: Store, token: str) -> None:
    """Refuse a token that could not be a header value, without ever echoing it."""
    if not token:
        if store.token_env is not None:
            raise MissingToken(store.identifier, store.token_env)
        raise ConfigError(f"store {store.identifier}: no token given for its client")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(
            f"store {store.identifier}: the token in {store.token_source.describe()} contains "
            "spaces, line breaks or non-ASCII characters; set it to the store's 80-character "
            "EcoManager token"
        )


def _check_timeout(timeout: float) -> None:
    check_seconds(timeout=timeout)
    if timeout <= 0:
        raise ValueError(f"timeout must be more than 0 seconds, got {timeout}")
