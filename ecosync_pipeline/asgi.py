"""ThreadedServer: an ASGI app served by uvicorn from a daemon thread on a real port.

The simulator, the webhook receiver and the tests' adversarial servers all run this
way inside a test or a benchmark process:

    with ThreadedServer(app) as server:
        httpx.get(server.url + "/path")

A server open to the internet (the webhook receiver) is given ``ConnectionLimits``: how
many connections and requests it holds at once (past it, new requests are answered 503
at once), how long a request's headers may take to arrive (uvicorn has no such timeout:
a client sending its headers a byte a minute would hold a connection for ever), how long
an idle kept-alive connection is held, and how large the headers may be.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.errors import EcosyncError


class ServerError(EcosyncError):
    """A local server could not start (port taken, app failing at start-up)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; port 0 lets the system pick a free one.

    IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    says TCP, and without it every keep-alive response waits ~40 ms (Nagle).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerError(
            f"cannot serve on {host}:{port} ({exc.strerror}); pick another port or stop "
            "what is using it"
        ) from exc
    return sock


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nothing listens on it now, else a port the system picks (for a
    server another process starts, which binds it again)."""
    try:
        sock = bind_socket("127.0.0.1", preferred)
    except ServerError:
        if not preferred:
            raise
        sock = bind_socket("127.0.0.1", 0)
    with sock:
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client can hold of a server: connections, and the time between requests."""

    concurrency: int = 100
    """Open connections (and requests in flight) at once; past it, new requests get 503."""
    header_timeout: float = 10.0
    """Seconds a request's headers may take to arrive, from the connection or the last
    answer on it; a connection that sends nothing for as long is closed too."""
    keep_alive: int = 5
    """Seconds an idle kept-alive connection is held."""
    max_header_bytes: int = 16 * 1024


def bounded_h11(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers are too slow."""

    class BoundedH11(H11Protocol):
        _headers_due: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._await_headers()  # a request started: its headers are due in time
            else:
                self._headers_arrived()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_arrived()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            if self._headers_due is None:
                self._headers_due = self.loop.call_later(header_timeout, self._too_slow)

        def _headers_arrived(self) -> None:
            if self._headers_due is not None:
                self._headers_due.cancel()
                self._headers_due = None

        def _too_slow(self) -> None:
            self._headers_due = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return BoundedH11


def uvicorn_config(app: Any, limits: ConnectionLimits | None = None) -> uvicorn.Config:
    """The quiet uvicorn settings every local server uses, bounded by ``limits`` if given."""
    bounds: dict[str, Any] = {}
    if limits is not None:
        bounds = {
            "http": bounded_h11(limits.header_timeout),
            "limit_concurrency": limits.concurrency,
            "timeout_keep_alive": limits.keep_alive,
            "h11_max_incomplete_event_size": limits.max_header_bytes,
        }
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        loop="asyncio",
        **{"http": "h11", **bounds},
        # A request sleeping through a simulated timeout must not hold up shutdown.
        timeout_graceful_shutdown=1,
    )


class ThreadedServer(Closing):
    """Serve an ASGI app over real HTTP from a daemon thread."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The root URL, e.g. http://127.0.0.1:54321."""
        if not self.port:
            raise ServerError("the server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        """Bind the port, start serving, and return once requests are answered."""
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self._requested_port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, self.limits))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"asgi-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self.port = 0

    def close(self) -> None:
        """Stop serving (a ``with`` block's exit)."""
        self.stop()

    def __enter__(self) -> ThreadedServer:
        return self.start()
