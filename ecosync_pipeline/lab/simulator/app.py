"""The simulator over HTTP: the orders contract plus /_sim control endpoints (starlette).

    GET    /{STORE}/api/shop/v2/orders?page=N&per_page=M   the contract (and the other
                                     ways of reading: sort=-id, sort_direction + cursor)
    GET    /{STORE}/api/shop/v2/orders/{ID}                  one order, {"data": order}
    GET    /_sim/stores                                      every store, described
    POST   /_sim/reset                                       initial state, faults off
    POST   /_sim/faults            {switch: value, ...}      switches of every store
    GET    /_sim/{STORE}/stats                               size, ids, switches, counts
    POST   /_sim/{STORE}/orders    {"count": k}              new orders -> {"ids": [...]}
    POST   /_sim/{STORE}/delete    {"ids": [...]} or {"random": n, "min_id", "max_id"}
    POST   /_sim/{STORE}/status    {"id", "status", "confirmation"} or {"random": n}
                                   or {"advance": n} (n open orders move one state)
    POST   /_sim/{STORE}/swap      {"count": n}   n deleted and n added at one instant
    POST   /_sim/{STORE}/faults    {switch: value, ...}      -> {"faults": {...}}
    DELETE /_sim/{STORE}/faults                              well-behaved again
    POST   /_sim/{STORE}/fail-next {"count": n, "kind": k}   scripted failures
    POST   /_sim/{STORE}/reset-counts                        forget request counts
    GET    /_sim/{STORE}/ids                                 every id, one a line, streamed
    GET    /_sim/{STORE}/page-of?id=X&per_page=20            -> {"id": X, "page": P|null}

The webhooks endpoints of the contract and their control are in webhooks.py.
Control endpoints need no token: the simulator is a local test server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ecosync_pipeline.ecomanager.client import ORDERS_PATH
from ecosync_pipeline.lab.simulator.core import Reply, Simulator
from ecosync_pipeline.lab.simulator.spec import SimulatorError, UnknownStore
from ecosync_pipeline.lab.simulator.webhook_routes import webhook_routes

IDS_CHUNK = 4096
DISCONNECT_POLL = 0.05


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SimulatorError(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise SimulatorError("request body must be a JSON object")
    return body


def _int_field(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SimulatorError(f"field {name!r} must be an integer, got {value!r}")
    return value


def _count(body: dict[str, Any], name: str) -> int:
    value = _int_field(body, name, 1)
    if value < 0:
        raise SimulatorError(f"{name} must be >= 0, got {value}")
    return value


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    return None if body.get(name) is None else _int_field(body, name)


async def _client_left(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, returning early (True) if the client closes the connection.

    Without this a simulated timeout would keep a task sleeping long after the client
    gave up, and stopping the server would have to cancel it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(min(DISCONNECT_POLL, remaining))
        if await request.is_disconnected():
            return True
    return False


async def _send(request: Request, reply: Reply) -> Response:
    """Wait the reply's delay (unless the client leaves), then send it."""
    if reply.delay > 0 and await _client_left(request, reply.delay):
        # The client gave up (a simulated timeout did its job): nobody to answer.
        return Response(status_code=499)
    return JSONResponse(reply.body, status_code=reply.status, headers=dict(reply.headers))


def create_app(simulator: Simulator) -> Starlette:
    """The ASGI app serving ``simulator`` (usable with uvicorn or httpx.ASGITransport)."""

    async def orders(request: Request) -> Response:
        reply = simulator.handle_orders(
            request.path_params["store"],
            authorization=request.headers.get("authorization"),
            path=str(request.url.replace(query="")),
            query=dict(request.query_params),
        )
        return await _send(request, reply)

    async def order(request: Request) -> Response:
        reply = simulator.handle_order(
            request.path_params["store"],
            request.path_params["order_id"],
            authorization=request.headers.get("authorization"),
        )
        return await _send(request, reply)

    async def stores(request: Request) -> Response:
        return JSONResponse({"stores": [simulator.describe(s) for s in simulator.stores()]})

    async def reset(request: Request) -> Response:
        simulator.reset()
        return JSONResponse({"stores": simulator.stores()})

    async def all_faults(request: Request) -> Response:
        body = await _json_body(request)
        simulator.set_faults(None, **body)
        return JSONResponse({"stores": simulator.stores()})

    async def stats(request: Request) -> Response:
        return JSONResponse(simulator.describe(request.path_params["store"]))

    async def add_orders(request: Request) -> Response:
        body = await _json_body(request)
        count = _count(body, "count")
        return JSONResponse({"ids": simulator.add_orders(request.path_params["store"], count)})

    async def delete(request: Request) -> Response:
        store = request.path_params["store"]
        body = await _json_body(request)
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise SimulatorError("field 'ids' must be a list of integers")
            deleted = simulator.delete_orders(store, ids)
        else:
            deleted = simulator.delete_random(
                store,
                _int_field(body, "random", 1),
                min_id=_optional_int(body, "min_id"),
                max_id=_optional_int(body, "max_id"),
            )
        return JSONResponse({"deleted": deleted})

    async def status(request: Request) -> Response:
        store = request.path_params["store"]
        body = await _json_body(request)
        if "id" in body:
            order_id = _int_field(body, "id")
            new_status = body.get("status")
            if not isinstance(new_status, str):
                raise SimulatorError("field 'status' must be an order state name")
            confirmation = body.get("confirmation")
            simulator.set_status(
                store, order_id, new_status, confirmation if isinstance(confirmation, str) else None
            )
            changed = [order_id]
        elif "advance" in body:
            changed = simulator.advance_statuses(store, _count(body, "advance"))
        else:
            changed = simulator.change_random_statuses(store, _int_field(body, "random", 1))
        return JSONResponse({"changed": changed})

    async def swap(request: Request) -> Response:
        body = await _json_body(request)
        deleted, added = simulator.swap_orders(request.path_params["store"], _count(body, "count"))
        return JSONResponse({"deleted": deleted, "added": added})

    async def faults(request: Request) -> Response:
        store = request.path_params["store"]
        if request.method == "DELETE":
            simulator.clear_faults(store)
        else:
            simulator.set_faults(store, **(await _json_body(request)))
        return JSONResponse({"faults": simulator.faults(store).as_dict()})

    async def fail_next(request: Request) -> Response:
        body = await _json_body(request)
        kind = body.get("kind")
        if not isinstance(kind, str):
            raise SimulatorError("field 'kind' must name a failure kind")
        simulator.fail_next(request.path_params["store"], _int_field(body, "count", 1), kind)
        return JSONResponse(simulator.describe(request.path_params["store"]))

    async def reset_counts(request: Request) -> Response:
        simulator.reset_counts(request.path_params["store"])
        return JSONResponse(simulator.describe(request.path_params["store"]))

    async def ids(request: Request) -> Response:
        stream = simulator.ids(request.path_params["store"])

        def chunks() -> Iterator[str]:
            batch: list[str] = []
            for order_id in stream:
                batch.append(f"{order_id}\n")
                if len(batch) == IDS_CHUNK:
                    yield "".join(batch)
                    batch = []
            if batch:
                yield "".join(batch)

        return StreamingResponse(chunks(), media_type="text/plain")

    async def page_of(request: Request) -> Response:
        store = request.path_params["store"]
        try:
            order_id = int(request.query_params["id"])
            per_page = int(request.query_params.get("per_page", "20"))
        except (KeyError, ValueError):
            raise SimulatorError("page-of needs ?id=<order id>[&per_page=<n>]") from None
        return JSONResponse(
            {
                "id": order_id,
                "per_page": per_page,
                "page": simulator.page_of(store, order_id, per_page),
            }
        )

    async def unknown_store(request: Request, exc: Exception) -> Response:
        return JSONResponse({"message": str(exc)}, status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"message": str(exc)}, status_code=400)

    routes = [
        Route("/_sim/stores", stores, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/faults", all_faults, methods=["POST"]),
        Route("/_sim/{store}/stats", stats, methods=["GET"]),
        Route("/_sim/{store}/orders", add_orders, methods=["POST"]),
        Route("/_sim/{store}/delete", delete, methods=["POST"]),
        Route("/_sim/{store}/status", status, methods=["POST"]),
        Route("/_sim/{store}/swap", swap, methods=["POST"]),
        Route("/_sim/{store}/faults", faults, methods=["POST", "DELETE"]),
        Route("/_sim/{store}/fail-next", fail_next, methods=["POST"]),
        Route("/_sim/{store}/reset-counts", reset_counts, methods=["POST"]),
        Route("/_sim/{store}/ids", ids, methods=["GET"]),
        Route("/_sim/{store}/page-of", page_of, methods=["GET"]),
        Route("/{store}" + ORDERS_PATH, orders, methods=["GET"]),
        Route("/{store}" + ORDERS_PATH + "/{order_id:int}", order, methods=["GET"]),
        *webhook_routes(simulator),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            UnknownStore: unknown_store,
            SimulatorError: bad_request,
        },
    )
    app.state.simulator = simulator
    return app
