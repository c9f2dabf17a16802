"""The webhooks of the contract in the simulator: registration endpoints and delivery.

    POST   /{STORE}/api/shop/v2/webhooks                 create (then the activation GET)
    GET    /{STORE}/api/shop/v2/webhooks[?ids=1,2&per_page=10&cursor=C]   list (cursor pages)
    GET|PUT|DELETE /{STORE}/api/shop/v2/webhooks/{id}    read, update, delete one
    PUT    /{STORE}/api/shop/v2/webhooks/{id}/status     {"status": true|false}
    GET|POST /_sim/webhooks/policy                       retry schedule, time scale, switches
    GET    /_sim/webhooks/stats                          counts, webhooks, notices

Each creation, deletion and status change of a store (the simulator's observers) is
delivered to every active webhook of the store registered for its event, signed with
the webhook's secret (see delivery.py for retries and switches). The body is the order
as the single-order endpoint serves it, ``{"data": order}``. A status change
fires OrderStatusChanged, plus OrderConfirmationStatusChanged when the order moves to
Confirmé or Annulé and OrderShippingStatusChanged when it moves to Expédié, Livré or
Retourné. An OrderDeleted body is the order as it was, with ``deleted_at`` and
``updated_at`` set to the deletion time (as Laravel's soft delete does).

Delivery URLs must be HTTPS, as EcoManager requires; plain http is accepted for
loopback addresses only, so tests can point it at a local receiver.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ecosync_pipeline.lab.simulator.delivery import Delivery, Dispatcher
from ecosync_pipeline.lab.simulator.orders import timestamp
from ecosync_pipeline.lab.simulator.spec import SimulatorError, StoreSpec
from ecosync_pipeline.lab.simulator.store import Change, Observer


class Simulated(Protocol):
    """What the hub needs of the simulator that owns it (core.Simulator)."""

    seed: int
    url: str | None

    def spec(self, store: str) -> StoreSpec: ...

    def add_observer(self, observer: Observer) -> None: ...


EVENTS = (
    "OrderCreated",
    "OrderDeleted",
    "OrderStatusChanged",
    "OrderConfirmationStatusChanged",
    "OrderShippingStatusChanged",
)
CONFIRMATION_STATES = ("Confirmé", "Annulé")
SHIPPING_STATES = ("Expédié", "Livré", "Retourné")
MAX_HEADERS = 5
MAX_PAYLOAD = 10
DEFAULT_PER_PAGE = 10
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class InvalidWebhook(SimulatorError):
    """A webhook request the contract refuses (answered 422 with the field errors)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class WebhookNotFound(SimulatorError):
    """No webhook with this id in this store (answered 404)."""


@dataclass
class Webhook:
    """One registered webhook of one store."""

    id: int
    store: str
    name: str
    event: str
    delivery_url: str
    secret: str = field(repr=False)
    is_active: bool = True
    http_method: str = "post"
    headers: list[dict[str, str]] = field(default_factory=list)
    payload: list[dict[str, str]] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    def as_json(self) -> dict[str, Any]:
        """The webhook as the API answers it (the secret is never sent back)."""
        return {
            "id": self.id,
            "name": self.name,
            "event": self.event,
            "http_method": self.http_method,
            "delivery_url": self.delivery_url,
            "is_active": self.is_active,
            "headers": self.headers,
            "payload": self.payload,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _now() -> str:
    return timestamp(datetime.now(timezone.utc))


def _pairs(body: dict[str, Any], name: str, limit: int, errors: dict[str, str]) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > limit:
        errors[name] = f"must be a list of at most {limit} {{key, value}} objects"
        return []
    pairs = []
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("key"), str)):
            errors[name] = "each entry must be an object with a string 'key' and a 'value'"
            return []
        pairs.append({"key": item["key"], "value": str(item.get("value", ""))})
    return pairs


def validate_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The webhook fields of a create (all required) or update (any subset) request."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    required = ("name", "event", "delivery_url", "secret")
    for key in required:
        if key not in body:
            if not partial:
                errors[key] = "is required"
            continue
        if not isinstance(body[key], str) or not body[key].strip():
            errors[key] = "must be a non-empty string"
        else:
            out[key] = body[key].strip()
    if "event" in out and out["event"] not in EVENTS:
        errors["event"] = f"must be one of {', '.join(EVENTS)}"
    if "delivery_url" in out:
        parts = urlsplit(out["delivery_url"])
        loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if not parts.hostname or (parts.scheme != "https" and not loopback):
            errors["delivery_url"] = "must be an https:// URL"
    method = body.get("http_method", "post")
    if not isinstance(method, str) or method.lower() != "post":
        errors["http_method"] = "must be 'post'"
    if "is_active" in body:
        if not isinstance(body["is_active"], bool):
            errors["is_active"] = "must be true or false"
        out["is_active"] = body["is_active"]
    if "headers" in body or not partial:
        out["headers"] = _pairs(body, "headers", MAX_HEADERS, errors)
    if "payload" in body or not partial:
        out["payload"] = _pairs(body, "payload", MAX_PAYLOAD, errors)
    if errors:
        raise InvalidWebhook(errors)
    return out


def encode_cursor(last_id: int) -> str:
    """Laravel's keyset cursor: base64 of {"id": ..., "_pointsToNextItems": true}."""
    raw = json.dumps({"id": last_id, "_pointsToNextItems": True}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor points after; SimulatorError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SimulatorError(f"cursor {cursor[:40]!r} is not a valid cursor") from exc
    if not isinstance(value, int):
        raise SimulatorError(f"cursor {cursor[:40]!r} is not a valid cursor")
    return value


class WebhookHub:
    """The registered webhooks of every store and their delivery."""

    def __init__(self, simulator: Simulated) -> None:
        self._sim = simulator
        self._lock = threading.RLock()
        self._hooks: dict[int, Webhook] = {}
        self._ids = itertools.count(1)
        self._observing = False
        self.notices: list[str] = []
        """What EcoManager would email the shop: webhooks disabled after their last retry."""
        self.dispatcher = Dispatcher(self._exhausted, simulator.seed)

    # --- registration ------------------------------------------------------------

    def create(self, store: str, body: dict[str, Any]) -> Webhook:
        """Register a webhook; it is active only if its URL answers the activation GET."""
        self._sim.spec(store)  # UnknownStore for a store that is not simulated
        values = validate_fields(body, partial=False)
        wanted_active = values.pop("is_active", True)
        now = _now()
        with self._lock:
            hook = Webhook(
                id=next(self._ids),
                store=store,
                is_active=False,
                created_at=now,
                updated_at=now,
                **values,
            )
            self._hooks[hook.id] = hook
            if not self._observing:
                self._sim.add_observer(self.observe)
                self._observing = True
        if wanted_active:
            self._activate(hook)
        return hook

    def get(self, store: str, webhook_id: int) -> Webhook:
        """One webhook of the store (WebhookNotFound otherwise)."""
        with self._lock:
            hook = self._hooks.get(webhook_id)
        if hook is None or hook.store != store:
            raise WebhookNotFound(f"store {store} has no webhook {webhook_id}")
        return hook

    def page(
        self, store: str, ids: list[int] | None, per_page: int, cursor: str | None
    ) -> tuple[list[Webhook], str | None]:
        """One cursor page of the store's webhooks (ascending id) and the next cursor."""
        after = decode_cursor(cursor) if cursor else 0
        with self._lock:
            hooks = sorted(
                (
                    h
                    for h in self._hooks.values()
                    if h.store == store and h.id > after and (ids is None or h.id in ids)
                ),
                key=lambda h: h.id,
            )
        page = hooks[:per_page]
        more = len(hooks) > per_page
        return page, encode_cursor(page[-1].id) if more and page else None

    def update(self, store: str, webhook_id: int, body: dict[str, Any]) -> Webhook:
        """Change some fields; turning it active (or moving its URL) sends the activation GET."""
        hook = self.get(store, webhook_id)
        values = validate_fields(body, partial=True)
        wanted_active = values.pop("is_active", hook.is_active)
        moved = values.get("delivery_url", hook.delivery_url) != hook.delivery_url
        with self._lock:
            for key, value in values.items():
                setattr(hook, key, value)
            hook.updated_at = _now()
            if not wanted_active:
                hook.is_active = False
        if wanted_active and (moved or not hook.is_active):
            self._activate(hook)
        return hook

    def set_status(self, store: str, webhook_id: int, active: bool) -> Webhook:
        """Switch a webhook on (after the activation GET answers) or off."""
        hook = self.get(store, webhook_id)
        if active:
            self._activate(hook)
        else:
            with self._lock:
                hook.is_active = False
                hook.updated_at = _now()
        return hook

    def delete(self, store: str, webhook_id: int) -> None:
        """Remove a webhook; deliveries already queued for it still go out."""
        self.get(store, webhook_id)
        with self._lock:
            del self._hooks[webhook_id]

    def webhooks(self, store: str | None = None) -> list[Webhook]:
        """Registered webhooks (of one store, or all), by id."""
        with self._lock:
            return sorted(
                (h for h in self._hooks.values() if store is None or h.store == store),
                key=lambda h: h.id,
            )

    def clear(self) -> None:
        """Forget every webhook, queued delivery and notice (the simulator was reconfigured)."""
        with self._lock:
            self._hooks.clear()
            self.notices.clear()
        self.dispatcher.clear()

    def _activate(self, hook: Webhook) -> None:
        """The activation GET: one request, answered 2xx within the timeout, or inactive."""
        try:
            ok = httpx.get(hook.delivery_url, timeout=self.dispatcher.policy.timeout).is_success
        except httpx.HTTPError:
            ok = False
        with self._lock:
            hook.is_active = ok
            hook.updated_at = _now()

    # --- delivery ----------------------------------------------------------------

    def observe(self, change: Change) -> None:
        """A simulator observer: queue one delivery per matching active webhook."""
        events = _events_for(change)
        with self._lock:
            targets = [
                h
                for h in self._hooks.values()
                if h.store == change.store and h.is_active and h.event in events
            ]
        if not targets:
            return
        order = change.order
        if change.kind == "deleted":
            # The deletion touches updated_at, and never moves it backwards.
            when = max(
                timestamp(datetime.fromtimestamp(change.at, timezone.utc)), order["updated_at"]
            )
            order = {**order, "deleted_at": when, "updated_at": when}
        body = json.dumps({"data": order}, separators=(",", ":")).encode()
        source = self._source(change.store)
        for hook in targets:
            self.dispatcher.submit(
                Delivery(
                    store=change.store,
                    webhook_id=hook.id,
                    event=hook.event,
                    order_id=change.order_id,
                    body=body,
                    url=hook.delivery_url,
                    secret=hook.secret,
                    source=source,
                    headers=tuple((h["key"], h["value"]) for h in hook.headers),
                    created_at=change.at,
                )
            )

    def _source(self, store: str) -> str:
        if self._sim.url is not None:
            return f"{self._sim.url}/{store}"
        return f"https://{store.lower()}.ecomanager.dz"

    def _exhausted(self, delivery: Delivery) -> None:
        """The last retry failed: disable the webhook and tell the shop."""
        with self._lock:
            hook = self._hooks.get(delivery.webhook_id)
            if hook is not None and hook.is_active:
                hook.is_active = False
                hook.updated_at = _now()
                self.notices.append(
                    f"store {delivery.store}: webhook {hook.id} ({hook.event}) disabled after "
                    f"{delivery.attempt + 1} failed deliveries to {hook.delivery_url}"
                )

    def stats(self) -> dict[str, Any]:
        """Delivery counts, the policy, the webhooks and the notices, JSON-ready."""
        d = self.dispatcher
        return {
            "counts": dict(d.counts),
            "pending": d.pending(),
            "policy": d.policy.as_dict(),
            "webhooks": [h.as_json() | {"store": h.store} for h in self.webhooks()],
            "notices": list(self.notices),
        }


def _events_for(change: Change) -> set[str]:
    if change.kind == "created":
        return {"OrderCreated"}
    if change.kind == "deleted":
        return {"OrderDeleted"}
    state = change.order.get("order_state_name")
    events = {"OrderStatusChanged"}
    if state in CONFIRMATION_STATES:
        events.add("OrderConfirmationStatusChanged")
    if state in SHIPPING_STATES:
        events.add("OrderShippingStatusChanged")
    return events
