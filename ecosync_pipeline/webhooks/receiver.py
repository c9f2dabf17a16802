"""The webhook receiver: ``POST /webhooks/{STORE}``, verified, stored, answered within seconds.

Each delivery goes through, in order:

1. the store is configured to take webhooks (else 404);
2. the body is streamed through the HMAC-SHA256 of the store's secret, keeping at most
   ``max_body_bytes`` of it; past ``max_verified_bytes`` it is not read further (413), and
   a body slower than ``body_timeout`` is dropped (408): neither can be known authentic;
3. ``X-Ecomanager-Signature`` must match, compared in constant time (else 401);
4. an authentic delivery is stored and committed, then answered 200 whatever it holds
   (DESIGN, invariant 13: EcoManager disables a webhook whose deliveries keep failing).
   One that cannot be applied (not an order, an id beyond BIGINT, an unknown event, a
   body over ``max_body_bytes``) is stored ``refused`` with its reason and counted; its
   order is left to the poll. A repeat of a stored delivery is answered 200, stored once.

Only an outage answers 503 (the database down or too slow to store within
``store_timeout``, the store's secret unset), so EcoManager retries. Applying the inbox
happens elsewhere (an Applier thread, the Dagster sensor), so a slow apply never delays
an answer. ``GET /webhooks/{STORE}`` is the activation check: 200 for a configured store.

Nothing the receiver logs or answers holds the body (customer names, phone numbers) or
the secret: refusals name the store and the reason only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ecosync_pipeline.config import STORE_ID_PATTERN, Store, StoreId, find_store
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.ecomanager.values import MAX_ORDER_ID
from ecosync_pipeline.errors import (
    ConfigError,
    EcosyncError,
    MissingWebhookSecret,
    SecretFileError,
    StorageError,
)
from ecosync_pipeline.webhooks.config import EVENTS, webhook_secret, webhook_stores
from ecosync_pipeline.webhooks.inbox import NO_ORDER_ID, Delivery, store_delivery
from ecosync_pipeline.webhooks.signature import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    matches,
    signer,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 256 * 1024
"""An order is a few kilobytes; a body this large is not one (kept refused, not stored)."""
DEFAULT_MAX_VERIFIED_BYTES = 16 * 1024 * 1024
"""How far a body is read to verify its signature; past it, 413 without reading more."""
DEFAULT_STORE_TIMEOUT = 4.0
"""EcoManager waits 5 s for the answer; storing gets 4 of them."""
DEFAULT_BODY_TIMEOUT = 10.0
"""A body that takes longer to arrive holds a connection for nothing."""


@dataclass(frozen=True)
class ReceiverSettings:
    """The receiver's limits."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_verified_bytes: int = DEFAULT_MAX_VERIFIED_BYTES
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT


class Refused(Exception):
    """A request refused with ``status``; ``reason`` is safe to log (no body, no secret)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


class Unusable(Exception):
    """An authentic delivery that cannot be applied: kept ``refused`` with ``reason``."""

    def __init__(self, reason: str, order_id: int = NO_ORDER_ID) -> None:
        self.reason = reason
        self.order_id = order_id
        super().__init__(reason)


def parse_order_id(body: bytes) -> int:
    """The order id of a delivery body (``{"data": order}`` or the bare order); Unusable else."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise Unusable("the body is not JSON") from None
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    order_id = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id <= 0:
        raise Unusable("the body is not an order with a positive integer id")
    if order_id > MAX_ORDER_ID:
        raise Unusable(
            f"order id {order_id} does not fit the orders table (BIGINT, at most 2^63-1)"
        )
    try:
        Order.from_payload(payload, store="-", page=0, index=0)
    except (EcosyncError, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
        raise Unusable(
            f"order {order_id} cannot be read ({type(exc).__name__})", order_id
        ) from None
    return order_id


@dataclass(frozen=True)
class SignedBody:
    """A body as streamed: what was kept (None past the cap), its size, digest and HMAC."""

    kept: bytes | None
    size: int
    sha256: str
    mac: hmac.HMAC


async def read_signed(request: Request, secret: str, limits: ReceiverSettings) -> SignedBody:
    """Stream the body through its HMAC, keeping up to ``max_body_bytes`` (Refused past the
    verification limit, on a client that leaves, or a body slower than ``body_timeout``)."""
    hard = limits.max_verified_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > hard:
        raise Refused(413, f"the body declares {declared} bytes, over the {hard}-byte limit")
    mac, digest = signer(secret), hashlib.sha256()
    chunks: list[bytes] | None = []
    size = 0

    async def stream() -> None:
        nonlocal chunks, size
        async for chunk in request.stream():
            size += len(chunk)
            if size > hard:
                raise Refused(413, f"the body is over the {hard}-byte limit; not read further")
            mac.update(chunk)
            digest.update(chunk)
            if chunks is not None and size <= limits.max_body_bytes:
                chunks.append(chunk)
            else:
                chunks = None

    try:
        await asyncio.wait_for(stream(), limits.body_timeout)
    except ClientDisconnect:
        raise Refused(400, "the client left before sending the whole body") from None
    except asyncio.TimeoutError:
        raise Refused(408, f"the body did not arrive within {limits.body_timeout:g} s") from None
    kept = b"".join(chunks) if chunks is not None else None
    return SignedBody(kept, size, digest.hexdigest(), mac)


def delivery_of(
    store: StoreId, event: str, webhook_id: str, body: SignedBody, cap: int
) -> Delivery:
    """The inbox row of an authentic delivery: pending, or refused with its reason."""
    received_at = datetime.now(timezone.utc)
    if body.kept is None:
        reason = f"the body is {body.size} bytes, over the {cap}-byte cap"
        return Delivery(
            store, event, webhook_id, NO_ORDER_ID, b"", received_at, reason, body.sha256
        )
    try:
        order_id = parse_order_id(body.kept)
        if event not in EVENTS:
            raise Unusable(f"unknown event {event[:40]!r}", order_id)
    except Unusable as unusable:
        return Delivery(
            store, event, webhook_id, unusable.order_id, body.kept, received_at, unusable.reason
        )
    return Delivery(store, event, webhook_id, order_id, body.kept, received_at)


class WebhookReceiver:
    """The receiver's state and its one endpoint; ``app`` is the ASGI app."""

    def __init__(
        self,
        engine: Engine,
        stores: Sequence[Store],
        *,
        settings: ReceiverSettings | None = None,
        environ: Mapping[str, str] | None = None,
        on_stored: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._limits = settings or ReceiverSettings()
        self._environ = environ
        self._on_stored = on_stored
        self._stores = webhook_stores(list(stores))
        self.app = Starlette(
            routes=[Route("/webhooks/{store}", self.endpoint, methods=["GET", "POST"])]
        )

    def _configured(self, identifier: str) -> Store:
        """The store a URL path names (outside input: parsed, then looked up)."""
        try:
            return find_store(self._stores, identifier, "the stores taking webhooks")
        except ConfigError:
            raise Refused(404, "no such store takes webhooks here") from None

    async def _verified(self, request: Request, store: Store) -> Delivery:
        """The authentic delivery (pending or refused), or Refused when it is not authentic."""
        try:
            secret = webhook_secret(store, self._environ)
        except (MissingWebhookSecret, SecretFileError) as exc:
            logger.error("%s", exc)
            raise Refused(503, "the store's webhook secret is not set") from None
        body = await read_signed(request, secret, self._limits)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not matches(body.mac, signature):
            raise Refused(
                401, "no signature" if signature is None else "the signature does not match"
            )
        return delivery_of(
            store.identifier,
            request.headers.get(EVENT_HEADER, ""),
            request.headers.get(WEBHOOK_ID_HEADER, ""),
            body,
            self._limits.max_body_bytes,
        )

    async def _store(self, delivery: Delivery) -> bool:
        """Store and commit the delivery (Refused 503 if that fails or takes too long)."""
        try:
            stored = await asyncio.wait_for(
                run_in_threadpool(store_delivery, self._engine, delivery),
                self._limits.store_timeout,
            )
        except (StorageError, asyncio.TimeoutError) as exc:
            logger.error(
                "store %s: %s of order %d not stored (%s); answered 503 so EcoManager retries",
                delivery.store,
                delivery.event[:40],
                delivery.order_id,
                exc if isinstance(exc, StorageError) else "the database took too long",
            )
            raise Refused(503, "the delivery could not be stored; retry later") from None
        what = "stored" if stored else "already stored"
        if delivery.refused is not None:
            logger.warning(
                "store %s: an authentic %s delivery (webhook %s) %s as refused, answered 200: "
                "%s; its order is left to the poll",
                *(delivery.store, delivery.event[:40], delivery.webhook_id[:64] or "-", what),
                delivery.refused,
            )
        else:
            logger.info(
                "store %s: %s of order %d (webhook %s) %s",
                *(delivery.store, delivery.event, delivery.order_id),
                *(delivery.webhook_id[:64] or "-", what),
            )
        if stored and delivery.refused is None and self._on_stored is not None:
            self._on_stored(delivery.store)
        return stored

    async def endpoint(self, request: Request) -> Response:
        """GET: the activation check. POST: a delivery, answered once stored."""
        identifier = request.path_params["store"]
        try:
            store = self._configured(identifier)
            if request.method == "GET":
                return JSONResponse({"store": store.identifier, "ready": True})
            delivery = await self._verified(request, store)
            stored = await self._store(delivery)
        except Refused as refused:
            if refused.status != 503:
                logger.warning(
                    "store %s: delivery refused with %d: %s",
                    identifier if STORE_ID_PATTERN.fullmatch(identifier) else "(invalid id)",
                    refused.status,
                    refused.reason,
                )
            return JSONResponse({"message": refused.reason}, status_code=refused.status)
        answer: dict[str, Any] = {"stored": stored}
        if delivery.refused is not None:
            answer["refused"] = delivery.refused
        return JSONResponse(answer)


def create_receiver_app(
    engine: Engine,
    stores: Sequence[Store],
    *,
    settings: ReceiverSettings | None = None,
    environ: Mapping[str, str] | None = None,
    on_stored: Callable[[str], None] | None = None,
) -> Starlette:
    """The receiver's ASGI app for ``stores`` (those naming a webhook secret take webhooks).

    ``on_stored(store)`` is called after each newly stored delivery to apply (to wake an
    Applier). Secrets are read from ``environ`` (default os.environ) at each delivery, so
    a rotated secret takes effect without a restart.
    """
    receiver = WebhookReceiver(
        engine, stores, settings=settings, environ=environ, on_stored=on_stored
    )
    return receiver.app
