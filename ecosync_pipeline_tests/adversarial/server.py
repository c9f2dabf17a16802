"""A small HTTP server of the EcoManager orders contract, with a store's quirks switchable.

Served from a thread on a free port (``http.server``, HTTP/1.0: a body without a length
ends when the connection closes, so a 40 MB answer can be streamed without building it).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

ORDERS_PATH = "/api/shop/v2/orders"
CHUNK = 64 * 1024

Echo = Literal["body", "html", "location", "retry_after", "id"]
"""Where a server that echoes the Authorization header puts it back."""


@dataclass
class Answer:
    """One HTTP answer: status, headers and the body as chunks."""

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]


def base_order(store: str, order_id: int) -> dict[str, Any]:
    """A plain, valid order of the contract."""
    return {
        "id": order_id,
        "reference": f"{store}{order_id}",
        "order_state_name": "Confirmé",
        "full_name": f"Client {order_id}",
        "telephone": "0550000000",
        "items": [{"product_id": 7, "sku": "SKU-7", "quantity": 1, "selling_price": 1500}],
        "total": "1500.00",
        "created_at": "2024-03-01T10:00:00+01:00",
    }


@dataclass
class AdversarialStore:
    """One store and how its server misbehaves (every quirk off by default)."""

    identifier: str
    token: str
    ids: list[int]
    odd: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Fields replaced on some orders: order id -> {field: value}."""
    per_page_cap: int | None = None
    """Serve at most this many orders a page, whatever is asked (meta says so)."""
    short: dict[int, int] = field(default_factory=dict)
    """Page number -> how many orders to leave off the end of that page (the first read)."""
    ignore_page: bool = False
    """Serve page 1 whatever page is asked."""
    echo: Echo | None = None
    huge_name_bytes: int = 0
    """Serve one order whose full_name is this many bytes, as the only page (streamed)."""
    declare_length: bool = False
    meta: bool = True
    delay: float = 0.0
    """Seconds each answer takes (a slow server, to act while a run is under way)."""
    cursor_ends_after: int | None = None
    """Newest-first reads: ``next_cursor`` is null after this many pages, more ids or not."""
    requests: list[tuple[int, int]] = field(default_factory=list)
    """(page, per_page) of every request; page 0 for a newest-first cursor read, and
    (-1, order id) for a single order's."""
    single_bare: bool = False
    """``GET /orders/{id}`` answers the bare order, not ``{"data": order}`` (both are seen)."""
    deleted: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Orders deleted upstream: id -> the order as it was, with its ``deleted_at``."""
    refusals: list[tuple[int, str | None]] = field(default_factory=list)
    """Answers served, first to last, before any page: (429 or 503, Retry-After or None)."""
    redirects: dict[int, tuple[int, str]] = field(default_factory=dict)
    """Page number -> the status and Location it is answered with (a moved or proxied API)."""
    replaced: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    """Page number -> the Content-Type and body of a 200 it is answered with instead."""
    before_page: dict[int, Callable[[], None]] = field(default_factory=dict)
    """Page number -> a change upstream made (once) just before that page is served."""
    arrivals: list[float] = field(default_factory=list)
    """When each page request arrived (time.monotonic)."""
    authorizations: list[str] = field(default_factory=list)
    """The Authorization header of every page request."""
    _short_served: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def change(self, order_id: int, at: str, **fields: Any) -> dict[str, Any]:
        """A change upstream (a status, say): the order's fields and a newer ``updated_at``."""
        with self._lock:
            self.odd[order_id] = {**self.odd.get(order_id, {}), **fields, "updated_at": at}
            return self.order(order_id)

    def add(self, *order_ids: int) -> None:
        """New orders: higher ids than any before, on the last page and after it."""
        with self._lock:
            assert not self.ids or min(order_ids) > max(self.ids), "ids increase with time"
            self.ids.extend(sorted(order_ids))

    def delete(self, order_id: int, at: str) -> dict[str, Any]:
        """Delete an order (later orders shift one slot towards page 1); the order as deleted."""
        with self._lock:
            self.ids.remove(order_id)
            gone = {**self.order(order_id), "updated_at": at, "deleted_at": at}
            self.deleted[order_id] = gone
            return gone

    def answer_order(self, order_id: int, authorization: str) -> Answer:
        """``GET /orders/{id}``: the order as held now, or 404 once it is deleted."""
        self.requests.append((-1, order_id))
        if authorization != f"Bearer {self.token}":
            return _json(401, {"message": "Unauthenticated."})
        with self._lock:
            if order_id not in self.ids:
                return _json(404, {"message": "Not found."})
            order = self.order(order_id)
        return _json(200, order if self.single_bare else {"data": order})

    def answer(self, page: int, per_page: int, authorization: str) -> Answer:
        """What the server sends for one request."""
        self.requests.append((page, per_page))
        self.arrivals.append(time.monotonic())
        self.authorizations.append(authorization)
        time.sleep(self.delay)
        if authorization != f"Bearer {self.token}":
            return _json(401, {"message": "Unauthenticated."})
        if self.refusals:
            return _refusal(*self.refusals.pop(0))
        if page in self.redirects:
            status, location = self.redirects[page]
            return Answer(status, {"Location": location}, iter([]))
        if page in self.replaced:
            kind, raw = self.replaced[page]
            return Answer(200, {"Content-Type": kind}, iter([raw]))
        if page in self.before_page:
            self.before_page.pop(page)()
        if self.echo is not None:
            return self._echo(authorization)
        if self.huge_name_bytes:
            return self._huge()
        size = min(per_page, self.per_page_cap or 100)
        served = 1 if self.ignore_page else page
        with self._lock:
            chunk = self.ids[(served - 1) * size : served * size]
            if served in self.short and served not in self._short_served:
                self._short_served.add(served)
                chunk = chunk[: len(chunk) - self.short[served]]
            body: dict[str, Any] = {"data": [self.order(i) for i in chunk]}
            total = len(self.ids)
        if self.meta:
            body["meta"] = {
                "current_page": served,
                "last_page": max(1, math.ceil(total / size)),
                "per_page": size,
                "total": total,
            }
        return _json(200, body)

    def answer_newest(self, cursor: str | None, per_page: int, authorization: str) -> Answer:
        """A newest-first keyset page (``sort_direction=desc``): no total, no last page.

        The cursor is opaque to the client (here: the page's number and the id it reads
        below), as the contract allows; ``cursor_ends_after`` ends the read early.
        """
        self.requests.append((0, per_page))
        time.sleep(self.delay)
        if authorization != f"Bearer {self.token}":
            return _json(401, {"message": "Unauthenticated."})
        number, below = (1, None) if cursor is None else _decode(cursor)
        with self._lock:
            newest = sorted(self.ids, reverse=True)
        if below is not None:
            newest = [i for i in newest if i < below]
        size = min(per_page, 100)
        chunk = newest[:size]
        more = len(newest) > size
        if self.cursor_ends_after is not None and number >= self.cursor_ends_after:
            more = False
        next_cursor = _encode(number + 1, chunk[-1]) if more and chunk else None
        meta = {"per_page": size, "next_cursor": next_cursor, "prev_cursor": None}
        with self._lock:
            data = [self.order(i) for i in chunk]
        return _json(200, {"data": data, "meta": meta})

    def order(self, order_id: int) -> dict[str, Any]:
        """The order as served now: a plain one with this store's odd or changed fields."""
        return {**base_order(self.identifier, order_id), **self.odd.get(order_id, {})}

    def _echo(self, authorization: str) -> Answer:
        if self.echo == "body":
            return Answer(200, {"Content-Type": "text/plain"}, iter([authorization.encode()]))
        if self.echo == "html":
            html = f"<html><body><h1>400</h1><p>{authorization}</p></body></html>"
            return Answer(200, {"Content-Type": "text/html"}, iter([html.encode()]))
        if self.echo == "location":
            return Answer(302, {"Location": f"https://login.example/?h={authorization}"}, iter([]))
        if self.echo == "retry_after":
            return Answer(429, {"Retry-After": authorization}, iter([]))
        return _json(200, {"data": [{"id": authorization}]})

    def _huge(self) -> Answer:
        head = json.dumps({"data": [{"id": 1, "full_name": ""}]}).encode()
        split = head.index(b'""') + 1
        total = len(head) + self.huge_name_bytes

        def chunks() -> Iterator[bytes]:
            yield head[:split]
            left = self.huge_name_bytes
            while left > 0:
                yield b"x" * min(CHUNK, left)
                left -= CHUNK
            yield head[split:]

        headers = {"Content-Type": "application/json"}
        if self.declare_length:
            headers["Content-Length"] = str(total)
        return Answer(200, headers, chunks())


def _encode(number: int, below: int) -> str:
    return base64.urlsafe_b64encode(f"{number}:{below}".encode()).decode()


def _decode(cursor: str) -> tuple[int, int]:
    number, below = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
    return int(number), int(below)


def _refusal(status: int, retry_after: str | None) -> Answer:
    """A 429 or 503 as Laravel sends it, with Retry-After when given."""
    answer = _json(status, {"message": "Too Many Attempts." if status == 429 else "Unavailable"})
    if retry_after is not None:
        answer.headers["Retry-After"] = retry_after
    return answer


def _json(status: int, body: object) -> Answer:
    # json.dumps writes NaN for float("nan") and escapes lone surrogates: as a server would.
    data = json.dumps(body).encode()
    return Answer(status, {"Content-Type": "application/json"}, iter([data]))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        store_id, _, rest = url.path.lstrip("/").partition("/")
        store = self.server.stores.get(store_id)
        path = "/" + rest
        if store is not None and path.startswith(ORDERS_PATH + "/"):
            single = path.removeprefix(ORDERS_PATH + "/")
            if single.isdigit():
                authorization = self.headers.get("Authorization", "")
                self._send(store.answer_order(int(single), authorization))
                return
        if store is None or path != ORDERS_PATH:
            self._send(Answer(404, {}, iter([b"not found"])))
            return
        query = parse_qs(url.query)
        per_page = int(query.get("per_page", ["20"])[0])
        authorization = self.headers.get("Authorization", "")
        if query.get("sort_direction") == ["desc"]:
            cursor = query.get("cursor", [None])[0]
            self._send(store.answer_newest(cursor, per_page, authorization))
            return
        page = int(query.get("page", ["1"])[0])
        self._send(store.answer(page, per_page, authorization))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for chunk in answer.chunks:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (a capped body): expected

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stores: dict[str, AdversarialStore]


class AdversarialServer:
    """Serves ``AdversarialStore``s at ``{url}/{identifier}`` from a background thread."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stores = {}
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def store_url(self, identifier: str) -> str:
        return f"{self.url}/{identifier}"

    def serve(self, *stores: AdversarialStore) -> None:
        """Serve exactly these stores from now on."""
        self._server.stores = {s.identifier: s for s in stores}

    def __enter__(self) -> AdversarialServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
