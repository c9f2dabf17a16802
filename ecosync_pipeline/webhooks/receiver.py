"""The webhook receiver: ``POST /webhooks/{STORE}``, verified, stored, answered within seconds.

Each delivery goes through, in order, and is refused at the first step it fails:

1. the store is configured to take webhooks (else 404);
2. the body is at most ``max_body_bytes`` (else 413; read no further than the cap);
3. ``X-Ecomanager-Signature`` is the HMAC-SHA256 of the raw body with the store's
   secret, compared in constant time (else 401);
4. the body is a JSON order with an integer id, ``{"data": order}`` as the single-order
   endpoint serves it or the bare order, and the event is one of the contract's (else 400);
5. it is stored in the inbox and committed (else 503, so EcoManager retries it), then
   answered 200; a repeat of a stored delivery is answered 200 and stored once.

Applying the inbox happens elsewhere (an Applier thread, the Dagster sensor), so a slow
apply never delays an answer; storing has ``store_timeout`` seconds before the answer
is 503. ``GET /webhooks/{STORE}`` is the activation check: 200 for a configured store.

Nothing the receiver logs or answers holds the body (customer names, phone numbers) or
the secret: refusals name the store and the reason only.
"""

from __future__ import annotations

import asyncio
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

from ecosync_pipeline.config import STORE_ID_PATTERN, Store, find_store
from ecosync_pipeline.errors import (
    ConfigError,
    MissingWebhookSecret,
    SecretFileError,
    StorageError,
)
from ecosync_pipeline.webhooks.config import EVENTS, webhook_secret, webhook_stores
from ecosync_pipeline.webhooks.inbox import Delivery, store_delivery
from ecosync_pipeline.webhooks.signature import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    verify,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 256 * 1024
"""An order is a few kilobytes; a body this large is not one."""
DEFAULT_STORE_TIMEOUT = 4.0
"""EcoManager waits 5 s for the answer; storing gets 4 of them."""


@dataclass(frozen=True)
class ReceiverSettings:
    """The receiver's limits."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    store_timeout: float = DEFAULT_STORE_TIMEOUT


class Refused(Exception):
    """A delivery refused with ``status``; ``reason`` is safe to log (no body, no secret)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def parse_order_id(body: bytes) -> int:
    """The order id of a delivery body; Refused(400) when it is not a JSON order."""
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    order_id = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id <= 0:
        raise Refused(400, "the body is not an order with a positive integer id")
    return order_id


async def read_capped(request: Request, cap: int) -> bytes:
    """The request body, refusing (413) past ``cap`` bytes without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise Refused(413, f"the body declares {declared} bytes, over the {cap}-byte cap")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise Refused(413, f"the body is over the {cap}-byte cap")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client left before sending the whole body") from None
    return b"".join(chunks)


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
        """The delivery, once its size, signature, event and body are checked (else Refused)."""
        try:
            secret = webhook_secret(store, self._environ)
        except (MissingWebhookSecret, SecretFileError) as exc:
            logger.error("%s", exc)
            raise Refused(503, "the store's webhook secret is not set") from None
        body = await read_capped(request, self._limits.max_body_bytes)
        if not verify(secret, body, request.headers.get(SIGNATURE_HEADER)):
            missing = SIGNATURE_HEADER.lower() not in request.headers
            raise Refused(401, "no signature" if missing else "the signature does not match")
        event = request.headers.get(EVENT_HEADER, "")
        if event not in EVENTS:
            raise Refused(400, f"unknown event {event[:40]!r}")
        return Delivery(
            store=store.identifier,
            event=event,
            webhook_id=request.headers.get(WEBHOOK_ID_HEADER, "")[:64],
            order_id=parse_order_id(body),
            body=body,
            received_at=datetime.now(timezone.utc),
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
                delivery.event,
                delivery.order_id,
                exc if isinstance(exc, StorageError) else "the database took too long",
            )
            raise Refused(503, "the delivery could not be stored; retry later") from None
        logger.info(
            "store %s: %s of order %d (webhook %s) %s",
            delivery.store,
            delivery.event,
            delivery.order_id,
            delivery.webhook_id or "-",
            "stored" if stored else "already stored",
        )
        if stored and self._on_stored is not None:
            self._on_stored(delivery.store)
        return stored

    async def endpoint(self, request: Request) -> Response:
        """GET: the activation check. POST: a delivery, answered once stored."""
        identifier = request.path_params["store"]
        try:
            store = self._configured(identifier)
            if request.method == "GET":
                return JSONResponse({"store": store.identifier, "ready": True})
            stored = await self._store(await self._verified(request, store))
        except Refused as refused:
            if refused.status != 503:
                logger.warning(
                    "store %s: delivery refused with %d: %s",
                    identifier if STORE_ID_PATTERN.fullmatch(identifier) else "(invalid id)",
                    refused.status,
                    refused.reason,
                )
            return JSONResponse({"message": refused.reason}, status_code=refused.status)
        return JSONResponse({"stored": stored})


def create_receiver_app(
    engine: Engine,
    stores: Sequence[Store],
    *,
    settings: ReceiverSettings | None = None,
    environ: Mapping[str, str] | None = None,
    on_stored: Callable[[str], None] | None = None,
) -> Starlette:
    """The receiver's ASGI app for ``stores`` (those naming a webhook secret take webhooks).

    ``on_stored(store)`` is called after each newly stored delivery (to wake an Applier).
    Secrets are read from ``environ`` (default os.environ) at each delivery, so a rotated
    secret takes effect without a restart.
    """
    receiver = WebhookReceiver(
        engine, stores, settings=settings, environ=environ, on_stored=on_stored
    )
    return receiver.app
