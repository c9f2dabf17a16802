"""Registering a store's webhooks through EcoManager's API, idempotently.

``register`` lists the store's webhooks first and, per event, updates the one ecosync
registered before (recognised by its name, ``ecosync <event>``) or creates it: running
it twice creates nothing new, and a moved URL or a rotated secret is updated in place.
Every call waits on the store's rate budget, as the sync's calls do (DESIGN,
invariant 12). The secret goes in the request body and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.budget import shared_budget
from ecosync_pipeline.ecomanager.limiter import Limiter
from ecosync_pipeline.errors import ApiAuthError, ApiError
from ecosync_pipeline.redact import quiet_request_log
from ecosync_pipeline.webhooks.config import EVENTS

logger = logging.getLogger(__name__)

WEBHOOKS_PATH = "/api/shop/v2/webhooks"
NAME_PREFIX = "ecosync "


@dataclass(frozen=True)
class Registration:
    """What register did for one event."""

    event: str
    webhook_id: int
    action: Literal["created", "updated"]
    is_active: bool


class WebhooksApi(Closing):
    """EcoManager's webhooks endpoints for one store."""

    def __init__(
        self,
        store: Store,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 15.0,
        rate_limiter: Limiter | None = None,
    ) -> None:
        self._store = store
        # The same budget as the store's sync, in every process (DESIGN, invariant 12).
        self._limiter = rate_limiter or shared_budget(store)
        quiet_request_log()  # the list's cursors must not reach the request log
        self._http = httpx.Client(
            base_url=store.base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        sid = self._store.identifier
        self._limiter.acquire()
        try:
            response = self._http.request(method, WEBHOOKS_PATH + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"store {sid}: {method} {WEBHOOKS_PATH}{path} failed ({type(exc).__name__}); "
                f"check the store's base_url {self._store.base_url} and try again",
                store=sid,
            ) from None
        if response.status_code in (401, 403):
            raise ApiAuthError(
                f"store {sid}: HTTP {response.status_code} from the webhooks API; check the "
                f"store's token in {self._store.token_source.describe()}",
                store=sid,
            )
        if response.status_code >= 400:
            raise ApiError(
                f"store {sid}: {method} {WEBHOOKS_PATH}{path} answered HTTP "
                f"{response.status_code}: {response.text[:300]}",
                store=sid,
            )
        return response.json() if response.content else None

    def list(self) -> Iterator[dict[str, Any]]:
        """Every webhook of the store, following the cursor pages."""
        params: dict[str, Any] = {"per_page": 100}
        while True:
            page = self._call("GET", "", params=params)
            yield from page.get("data", [])
            cursor = (page.get("meta") or {}).get("next_cursor")
            if not cursor:
                return
            params = {"per_page": 100, "cursor": cursor}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "", json=body)["data"])

    def update(self, webhook_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/{webhook_id}", json=body)["data"])

    def delete(self, webhook_id: int) -> None:
        self._call("DELETE", f"/{webhook_id}")


def register(
    api: WebhooksApi, url: str, secret: str, events: Iterable[str] = EVENTS
) -> list[Registration]:
    """Create or update ecosync's webhook for each event; return what was done."""
    wanted = list(dict.fromkeys(events))
    unknown = [e for e in wanted if e not in EVENTS]
    if unknown:
        raise ValueError(f"unknown events {', '.join(unknown)}; use {', '.join(EVENTS)}")
    mine = {h.get("name"): h for h in api.list() if str(h.get("name", "")).startswith(NAME_PREFIX)}
    done: list[Registration] = []
    for event in wanted:
        body = {
            "name": NAME_PREFIX + event,
            "event": event,
            "http_method": "post",
            "delivery_url": url,
            "secret": secret,
            "is_active": True,
        }
        existing = mine.get(NAME_PREFIX + event)
        action: Literal["created", "updated"] = "created" if existing is None else "updated"
        hook = api.create(body) if existing is None else api.update(int(existing["id"]), body)
        done.append(Registration(event, int(hook["id"]), action, bool(hook.get("is_active"))))
        if not hook.get("is_active"):
            logger.warning(
                "webhook %s (%s) is not active: %s did not answer the activation GET",
                hook["id"],
                event,
                url,
            )
    return done


def unregister(api: WebhooksApi, ids: Iterable[int] | None = None) -> list[int]:
    """Delete the given webhooks, or every webhook ecosync registered; return their ids."""
    targets = (
        list(ids)
        if ids is not None
        else [int(h["id"]) for h in api.list() if str(h.get("name", "")).startswith(NAME_PREFIX)]
    )
    for webhook_id in targets:
        api.delete(webhook_id)
    return targets
