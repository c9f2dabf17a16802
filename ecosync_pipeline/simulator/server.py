"""SimulatorServer: the simulator served by uvicorn from a background thread.

Used by the tests (one server for the whole session, reconfigured per test) and by
anything that wants a real HTTP endpoint inside its own process:

    with SimulatorServer(Simulator([StoreSpec("NATUR", count=500)])) as server:
        httpx.get(server.store_url("NATUR") + "/api/shop/v2/orders", ...)
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from ecosync_pipeline.simulator.app import create_app
from ecosync_pipeline.simulator.core import Simulator
from ecosync_pipeline.simulator.spec import SimulatorError

logger = logging.getLogger(__name__)


class SimulatorServer:
    """Serve a Simulator over real HTTP on 127.0.0.1 from a daemon thread."""

    def __init__(
        self,
        simulator: Simulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.simulator = simulator if simulator is not None else Simulator()
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The root URL, e.g. http://127.0.0.1:54321 (stores live under /{identifier})."""
        if not self.port:
            raise SimulatorError("the simulator server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def store_url(self, identifier: str) -> str:
        """A store's base_url on this server."""
        return f"{self.url}/{identifier}"

    def start(self) -> SimulatorServer:
        """Bind the port, start serving, and return once requests are answered."""
        if self._thread is not None:
            return self
        # Binding here (instead of letting uvicorn bind) gives the real port with port=0.
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive response waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.simulator),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            loop="asyncio",
            http="h11",
            # A request sleeping through a simulated timeout must not hold up shutdown.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SimulatorError(f"the simulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.simulator.url = self.url
        logger.info(
            "simulator serving %s at %s",
            ", ".join(self.simulator.stores()) or "no stores",
            self.url,
        )
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self.simulator.url = None
        self._server = self._thread = self._socket = None
        self.port = 0

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
