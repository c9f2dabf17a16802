"""The simulator a benchmark talks to: over real HTTP, by default in a process of its own.

In its own process the simulator computes pages on the second core, as a remote API
would, instead of taking turns with the client for one interpreter; the benchmark then
measures the client and the sync, not the server's share of a shared core. It is
driven through its control API (SimulatorClient), and a local Simulator built from the
same specs and seed gives the ground truth (the initial ids are the same, computed from
the seed, without a request).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import select
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import IO, Any

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline.lab.simulator import (
    Simulator,
    SimulatorClient,
    SimulatorError,
    SimulatorServer,
    StoreSpec,
    demo_token,
)

logger = logging.getLogger(__name__)

BENCH_REQUESTS_PER_SECOND = 10_000.0
"""The client's rate limit in benchmarks: high enough never to wait."""
STARTUP_SECONDS = 60.0


@dataclass
class ServedSimulator:
    """A simulator served over HTTP: its URL, its control client and a local twin."""

    url: str
    control: SimulatorClient
    local: Simulator
    """The same specs and seed, unchanged by the benchmark: the initial ids."""

    def store(self, identifier: str, *, per_page: int = 20) -> Store:
        """The configured Store for a served store (import and sync at ``per_page``)."""
        spec = self.local.spec(identifier)
        return Store(
            identifier=identifier,
            name=spec.name,
            base_url=f"{self.url}/{identifier}",
            token_env=spec.token_env,
            per_page=per_page,
            requests_per_second=BENCH_REQUESTS_PER_SECOND,
            import_per_page=per_page,
        )

    def token(self, identifier: str) -> str:
        """The token the served store accepts."""
        return self.local.token(identifier)

    def client(self, store: Store) -> EcoManagerClient:
        """A client for ``store`` with its own, never-waiting rate limiter."""
        return EcoManagerClient(
            store,
            self.token(store.identifier),
            rate_limiter=RateLimiter(BENCH_REQUESTS_PER_SECOND),
        )


def rewriting_body(
    send: Callable[[dict[str, Any]], Awaitable[None]], rewrite: Callable[[bytes], bytes]
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """An ASGI ``send`` that gathers a response's body, passes it through ``rewrite`` and
    sends it with its new length: how the benchmarks' proxies edit the simulator's answers."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def capture(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = rewrite(b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return capture


def _with_tokens(specs: Sequence[StoreSpec], seed: int) -> list[StoreSpec]:
    """Specs with explicit tokens, so both processes agree whatever the environment holds."""
    return [replace(s, token=s.token or demo_token(s.identifier, seed)) for s in specs]


@contextmanager
def served_simulator(
    specs: Sequence[StoreSpec], *, seed: int = 0, separate_process: bool = True
) -> Iterator[ServedSimulator]:
    """Serve ``specs`` over HTTP on 127.0.0.1 for the duration of the block."""
    specs = _with_tokens(specs, seed)
    local = Simulator(specs, seed=seed)
    if not separate_process:
        with SimulatorServer(Simulator(specs, seed=seed)) as server:
            control = SimulatorClient(server.url)
            try:
                yield ServedSimulator(server.url, control, local)
            finally:
                control.close()
        return
    # A child interpreter of its own (not multiprocessing): nothing of this process, its
    # threads or its __main__ module is carried over.
    payload = pickle.dumps((list(specs), seed))
    process = subprocess.Popen(
        [sys.executable, "-m", "ecosync_pipeline.lab.bench.simchild"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(f"{len(payload)}\n".encode() + payload)
        process.stdin.flush()
        line = _read_line(process.stdout, STARTUP_SECONDS)
        if not line.strip().isdigit():
            raise SimulatorError(
                f"the benchmark's simulator process did not start within {STARTUP_SECONDS:.0f} s "
                f"(exit status {process.poll()})"
            )
        url = f"http://127.0.0.1:{int(line)}"
        control = SimulatorClient(url)
        try:
            yield ServedSimulator(url, control, local)
        finally:
            control.close()
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=5)
        process.stdout.close()


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from the child's stdout, or "" after ``timeout`` seconds or at EOF."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().decode() if ready else ""
