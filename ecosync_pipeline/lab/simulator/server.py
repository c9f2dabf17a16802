"""SimulatorServer: the simulator served by uvicorn from a background thread.

Used by the tests (one server for the whole session, reconfigured per test) and by
anything that wants a real HTTP endpoint inside its own process:

    with SimulatorServer(Simulator([StoreSpec("NATUR", count=500)])) as server:
        httpx.get(server.store_url("NATUR") + "/api/shop/v2/orders", ...)
"""

from __future__ import annotations

import logging

from ecosync_pipeline.asgi import ServerError, ThreadedServer
from ecosync_pipeline.lab.simulator.app import create_app
from ecosync_pipeline.lab.simulator.core import Simulator
from ecosync_pipeline.lab.simulator.spec import SimulatorError

logger = logging.getLogger(__name__)


class SimulatorServer(ThreadedServer):
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
        super().__init__(
            create_app(self.simulator), host=host, port=port, startup_timeout=startup_timeout
        )

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
        try:
            super().start()
        except ServerError as exc:
            raise SimulatorError(str(exc)) from exc
        self.simulator.url = self.url
        self.simulator.start_clock()
        logger.info(
            "simulator serving %s at %s",
            ", ".join(self.simulator.stores()) or "no stores",
            self.url,
        )
        return self

    def stop(self) -> None:
        """Stop serving (and delivering webhooks, and the clock) and release the port."""
        self.simulator.stop_clock()
        super().stop()
        self.simulator.webhooks.dispatcher.stop()
        self.simulator.url = None

    def __enter__(self) -> SimulatorServer:
        return self.start()
