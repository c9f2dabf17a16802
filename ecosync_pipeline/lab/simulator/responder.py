"""The answer to one API request of a simulated store: token, rate windows, churn,
failures, then the body (reading.py builds it).

``respond`` applies a store's switches in the order a server would meet them: the token
is checked first (a refused token costs the store nothing), then the rate-limit windows
(a refused request counts in none), then the changes the store undergoes under the
client, the failures it is told to suffer, and last the body, broken when a malformed_*
failure says so. The caller holds the simulator's lock.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecosync_pipeline.lab.simulator.faults import FAIL_OUTCOME, FaultState
from ecosync_pipeline.lab.simulator.flow import StatusClock
from ecosync_pipeline.lab.simulator.reading import Query
from ecosync_pipeline.lab.simulator.store import SimStore

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9]{80}$")

_MESSAGES = {
    401: "Unauthenticated.",
    403: "This action is unauthorized.",
    404: "Not Found",
    429: "Too Many Attempts.",
    500: "Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Reply:
    """What the server sends for one request, and how long it waits before sending it."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    outcome: str = "ok"


def error(
    status: int, outcome: str, delay: float = 0.0, headers: Mapping[str, str] | None = None
) -> Reply:
    return Reply(status, {"message": _MESSAGES[status]}, headers or {}, delay, outcome)


def check_authorization(header: str | None, expected: str) -> str | None:
    """None if the header carries the expected token, else 'unauthorized' or 'forbidden'.

    Missing or malformed (not ``Bearer`` + 80 letters or digits) is 401; a well-formed
    token that is not this store's is 403, as the contract says.
    """
    if not header:
        return "unauthorized"
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "unauthorized"
    if hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return "forbidden" if TOKEN_PATTERN.match(token) else "unauthorized"


@dataclass
class StoreState:
    """One simulated store as the server holds it: orders, switches, token, clock."""

    store: SimStore
    faults: FaultState
    token: str
    clock: StatusClock = field(default_factory=StatusClock)


def respond(
    entry: StoreState,
    authorization: str | None,
    query: Query,
    build: Callable[[], dict[str, Any] | None] | str,
) -> Reply:
    """The reply to one request: the switches first, then the body ``build`` makes
    (None: 404; a string: the query is refused with 422 and that message)."""
    state, st = entry.faults, entry.store
    f = state.faults
    delay = f.latency_ms / 1000
    page, per_page, mode = query.page, query.per_page, query.mode

    if f.check_token:
        refused = check_authorization(authorization, entry.token)
        if refused is not None:
            state.record(page, per_page, refused, 0, mode)
            return error(401 if refused == "unauthorized" else 403, refused, delay)
    headers: dict[str, str] = {}
    if f.rate_windows:
        limits = f.window_limits()
        full = state.windows.hit(time.monotonic(), limits, f.time_scale)
        if full is not None:
            state.record(page, per_page, "rate_limited", 0, mode)
            return error(429, "rate_limited", delay, {"Retry-After": full.header(f.time_scale)})
        headers = _limit_headers(state, limits)
    _churn(state, st)

    failure = state.draw_failure()
    if failure is not None and failure != "timeout" and not failure.startswith("malformed"):
        return _failure_reply(state, failure, query, delay)
    if isinstance(build, str):
        state.record(page, per_page, "invalid", 0, mode)
        return Reply(422, {"message": build}, headers, delay, "invalid")
    body = build()
    if body is None:
        state.record(page, per_page, "not_found", 0, mode)
        message = f"No query results for model [Order] {query.page}"
        return Reply(404, {"message": message}, headers, delay, "not_found")
    outcome = "ok"
    if failure == "timeout":
        delay += f.timeout_seconds
        outcome = "timeout"
    elif failure is not None:
        _malform(body, failure, st.identifier)
        outcome = "malformed"
    served = body["data"]
    state.record(page, per_page, outcome, len(served) if isinstance(served, list) else 1, mode)
    return Reply(200, body, headers, delay, outcome)


def _limit_headers(state: FaultState, limits: dict[str, int | None]) -> dict[str, str]:
    """Laravel's X-RateLimit-* headers, for the window with the fewest requests left."""
    tightest = min((v for v in limits.values() if v is not None), default=None)
    remaining = state.windows.remaining(limits)
    if tightest is None or remaining is None:
        return {}
    return {"X-RateLimit-Limit": str(tightest), "X-RateLimit-Remaining": str(remaining)}


def _churn(state: FaultState, st: SimStore) -> None:
    """The changes the store undergoes under this request (the churn switches)."""
    add, delete, change, swap = state.churn()
    if add:
        st.add(1)
    if delete:
        st.delete_random(1)
    if change:
        st.change_random_statuses(1)
    if swap:
        st.swap(1)


def _failure_reply(state: FaultState, failure: str, query: Query, delay: float) -> Reply:
    page, per_page, mode = query.page, query.per_page, query.mode
    if failure == "rate_limited_window":
        state.record(page, per_page, "rate_limited", 0, mode)
        return error(429, "rate_limited", delay, {"Retry-After": "1"})
    outcome = FAIL_OUTCOME[failure]
    state.record(page, per_page, outcome, 0, mode)
    if failure == "rate_limited":
        retry_after = state.faults.retry_after
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return error(429, outcome, delay, headers)
    if failure == "rate_limited_no_retry_after":
        return error(429, outcome, delay)
    status = {"unavailable": 503, "server_error": 500, "unauthorized": 401, "forbidden": 403}[
        failure
    ]
    return error(status, outcome, delay)


def _malform(body: dict[str, Any], failure: str, identifier: str) -> None:
    """Break a body the way a malformed_* failure says (data not a list, or an id gone)."""
    data = body["data"]
    if failure == "malformed_data":
        body["data"] = (
            {str(i): order for i, order in enumerate(data)} if isinstance(data, list) else [data]
        )
    elif isinstance(data, dict):
        del data["id"]
    elif data:
        del data[0]["id"]
    else:
        body["data"] = [{"reference": identifier, "order_state_name": None}]
