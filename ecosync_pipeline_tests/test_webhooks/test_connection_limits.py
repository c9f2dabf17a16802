"""The receiver's connections are bounded: slow or idle clients are closed, and past the
concurrency limit new requests are answered 503 (retried by EcoManager), never queued
for ever. Real sockets against the receiver served by uvicorn."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from ecosync_pipeline.asgi import ConnectionLimits, ThreadedServer
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.signature import sign
from ecosync_pipeline_tests.test_webhooks.conftest import (
    SECRET,
    SECRET_ENV,
    Receiver,
    body_of,
    order,
    store,
)

LIMITS = ConnectionLimits(concurrency=3, header_timeout=0.5, keep_alive=1)


@pytest.fixture
def bounded(receiver: Receiver) -> Iterator[str]:
    """The receiver on its test database, served with LIMITS; its URL."""
    app = create_receiver_app(receiver.engine, [store("NATUR")], environ={SECRET_ENV: SECRET})
    with ThreadedServer(app, limits=LIMITS) as server:
        yield server.url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (reads on to EOF)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def _deliver(url: str, order_id: int) -> httpx.Response:
    body = body_of(order(order_id))
    headers = {"X-Ecomanager-Event": "OrderCreated", "X-Ecomanager-Signature": sign(SECRET, body)}
    return httpx.post(f"{url}/webhooks/NATUR", content=body, headers=headers, timeout=5)


def test_headers_that_arrive_too_slowly_close_the_connection(bounded: str) -> None:
    slow = _connect(bounded)
    slow.sendall(b"POST /webhooks/NATUR HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    assert _closed_within(slow, 3)
    silent = _connect(bounded)  # connects and sends nothing at all
    assert _closed_within(silent, 3)


def test_an_idle_kept_alive_connection_is_closed(bounded: str) -> None:
    sock = _connect(bounded)
    sock.sendall(b"GET /webhooks/NATUR HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert _closed_within(sock, 4)


def test_idle_clients_past_the_limit_get_503_until_they_are_closed(bounded: str) -> None:
    idle = [_connect(bounded) for _ in range(LIMITS.concurrency)]
    time.sleep(0.1)
    assert _deliver(bounded, 701).status_code == 503  # refused at once, EcoManager retries
    for sock in idle:
        assert _closed_within(sock, 3)
    assert _deliver(bounded, 702).status_code == 200
