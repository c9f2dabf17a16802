"""Small helpers the simulator tests share: one GET of a page, over real HTTP."""

from __future__ import annotations

import httpx

from ecosync_pipeline.lab.simulator import ORDERS_PATH, Simulator

_UNSET = object()
_shared: list[httpx.Client] = []


def http() -> httpx.Client:
    """One client for all simulator tests: a new client per request costs ~40 ms of TLS setup."""
    if not _shared:
        _shared.append(httpx.Client())
    return _shared[0]


def close_http() -> None:
    """Close the shared client (end of the session)."""
    while _shared:
        _shared.pop().close()


def fetch(
    simulator: Simulator,
    store: str,
    page: int | None = 1,
    per_page: int | None = None,
    *,
    token: object = _UNSET,
    timeout: float = 5.0,
) -> httpx.Response:
    """GET one page of ``store`` from the served simulator (its own token by default)."""
    params = {}
    if page is not None:
        params["page"] = page
    if per_page is not None:
        params["per_page"] = per_page
    headers = {"Accept": "application/json"}
    value = simulator.token(store) if token is _UNSET else token
    if value is not None:
        headers["Authorization"] = f"Bearer {value}"
    return http().get(
        simulator.store_url(store) + ORDERS_PATH, params=params, headers=headers, timeout=timeout
    )


def page_ids(
    simulator: Simulator, store: str, page: int | None, per_page: int | None = None
) -> list[int]:
    """The ids a page holds, fetched over HTTP (asserts a 200)."""
    response = fetch(simulator, store, page, per_page)
    assert response.status_code == 200, response.text
    return [order["id"] for order in response.json()["data"]]
