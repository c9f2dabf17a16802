"""The webhook endpoints of the simulator's HTTP app (see webhooks.py for what they do)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ecosync_pipeline.lab.simulator.core import Simulator, check_authorization
from ecosync_pipeline.lab.simulator.spec import SimulatorError, UnknownStore
from ecosync_pipeline.lab.simulator.webhooks import (
    DEFAULT_PER_PAGE,
    InvalidWebhook,
    WebhookNotFound,
)

WEBHOOKS_PATH = "/api/shop/v2/webhooks"
Handler = Callable[[Request], Awaitable[Response]]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise InvalidWebhook({"body": f"is not JSON ({exc})"}) from exc
    if not isinstance(body, dict):
        raise InvalidWebhook({"body": "must be a JSON object"})
    return body


def _authorized(simulator: Simulator, handler: Handler) -> Handler:
    """Check the store and its token (as the orders endpoint does), then run ``handler``."""

    async def wrapped(request: Request) -> Response:
        store = request.path_params["store"]
        try:
            token = simulator.token(store)
            check = simulator.faults(store).check_token
        except UnknownStore:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        refused = check_authorization(request.headers.get("authorization"), token)
        if check and refused is not None:
            status = 401 if refused == "unauthorized" else 403
            message = "Unauthenticated." if status == 401 else "This action is unauthorized."
            return JSONResponse({"message": message}, status_code=status)
        try:
            return await handler(request)
        except InvalidWebhook as exc:
            return JSONResponse(
                {"message": "The given data was invalid.", "errors": exc.errors}, status_code=422
            )
        except WebhookNotFound as exc:
            return JSONResponse({"message": str(exc)}, status_code=404)

    return wrapped


class _Endpoints:
    """The handlers, over one simulator's webhook hub."""

    def __init__(self, simulator: Simulator) -> None:
        self.hub = simulator.webhooks

    async def collection(self, request: Request) -> Response:
        store = request.path_params["store"]
        if request.method == "POST":
            body = await _body(request)
            hook = await run_in_threadpool(self.hub.create, store, body)
            return JSONResponse({"data": hook.as_json()}, status_code=201)
        query = request.query_params
        try:
            ids = [int(i) for i in query["ids"].split(",") if i] if "ids" in query else None
            per_page = max(1, min(100, int(query.get("per_page", DEFAULT_PER_PAGE))))
        except ValueError:
            raise InvalidWebhook({"ids": "must be comma-separated integers"}) from None
        try:
            page, next_cursor = self.hub.page(store, ids, per_page, query.get("cursor"))
        except SimulatorError as exc:
            raise InvalidWebhook({"cursor": str(exc)}) from exc
        path = str(request.url.replace(query=""))
        return JSONResponse(
            {
                "data": [h.as_json() for h in page],
                "links": {"next": f"{path}?cursor={next_cursor}" if next_cursor else None},
                "meta": {
                    "path": path,
                    "per_page": per_page,
                    "next_cursor": next_cursor,
                    "prev_cursor": None,
                },
            }
        )

    async def member(self, request: Request) -> Response:
        store, webhook_id = request.path_params["store"], request.path_params["id"]
        if request.method == "DELETE":
            self.hub.delete(store, webhook_id)
            return Response(status_code=204)
        if request.method == "PUT":
            body = await _body(request)
            hook = await run_in_threadpool(self.hub.update, store, webhook_id, body)
        else:
            hook = self.hub.get(store, webhook_id)
        return JSONResponse({"data": hook.as_json()})

    async def status(self, request: Request) -> Response:
        store, webhook_id = request.path_params["store"], request.path_params["id"]
        wanted = (await _body(request)).get("status")
        if not isinstance(wanted, bool):
            raise InvalidWebhook({"status": "must be true or false"})
        hook = await run_in_threadpool(self.hub.set_status, store, webhook_id, wanted)
        return JSONResponse({"data": hook.as_json()})

    async def policy(self, request: Request) -> Response:
        dispatcher = self.hub.dispatcher
        if request.method == "POST":
            dispatcher.policy = dispatcher.policy.updated(**await _body(request))
        return JSONResponse(dispatcher.policy.as_dict())

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.hub.stats())


def webhook_routes(simulator: Simulator) -> list[Route]:
    """The routes to add to the simulator's app."""
    ep = _Endpoints(simulator)
    member = WEBHOOKS_PATH + "/{id:int}"
    return [
        Route("/_sim/webhooks/policy", ep.policy, methods=["GET", "POST"]),
        Route("/_sim/webhooks/stats", ep.stats, methods=["GET"]),
        Route(
            "/{store}" + WEBHOOKS_PATH,
            _authorized(simulator, ep.collection),
            methods=["GET", "POST"],
        ),
        Route(
            "/{store}" + member, _authorized(simulator, ep.member), methods=["GET", "PUT", "DELETE"]
        ),
        Route("/{store}" + member + "/status", _authorized(simulator, ep.status), methods=["PUT"]),
    ]
