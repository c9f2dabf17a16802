"""What the mirror benchmark runs against, and how it judges the orders table.

The simulator is served in this process (the benchmark changes stores under the sync:
deletions, arrivals, status changes), once as it is and once behind a proxy that drops
``meta`` from every answer and can delete an order just before a given request: the
contract allows a server without ``meta``, the simulator always sends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.lab.bench.simserver import rewriting_body
from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer, StoreSpec
from ecosync_pipeline.lab.simulator.app import create_app
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import duplicate_count, iter_order_ids
from ecosync_pipeline.storage.ranges import deleted_ids

ASGIApp = Callable[..., Any]


def _without_meta(body: bytes) -> bytes:
    """A JSON object's answer without its ``meta``; any other body as it is."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    payload.pop("meta", None)
    return json.dumps(payload).encode()


class WithoutMeta:
    """An ASGI wrapper of the simulator: ``meta`` removed from every JSON answer.

    ``before_request`` (when set) is called with the number of each orders request
    before it is answered, so a benchmark can delete an order mid-run.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0
        self.before_request: Callable[[int], None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        if self.before_request is not None:
            self.before_request(self.requests)
        await self.app(scope, receive, rewriting_body(send, _without_meta))


@dataclass
class MirrorWorld:
    """The simulator, both servers, the settings and the stores of one benchmark run."""

    simulator: Simulator
    url: str
    bare_url: str
    proxy: WithoutMeta
    settings: Settings
    stores: dict[str, Store] = field(default_factory=dict)

    def add(self, spec: StoreSpec, *, bare: bool = False, **options: Any) -> Store:
        """A Store for a simulated ``spec`` (``bare``: through the server without meta)."""
        base = self.bare_url if bare else self.url
        store = Store(
            identifier=spec.identifier,
            name=spec.name,
            base_url=f"{base}/{spec.identifier}",
            token_env=spec.token_env,
            requests_per_second=10_000.0,
            **options,
        )
        self.stores[spec.identifier] = store
        return store

    def set(self, identifier: str, **options: Any) -> Store:
        """Change a configured store's options (read_mode, ...)."""
        self.stores[identifier] = replace(self.stores[identifier], **options)
        return self.stores[identifier]

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        rt = Runtime.from_settings(self.settings, stores=list(self.stores.values()))
        try:
            yield rt
        finally:
            rt.close()


@contextmanager
def mirror_world(settings: Settings, environ: dict[str, str]) -> Iterator[MirrorWorld]:
    """Serve one simulator twice (as it is, and without ``meta``) for a benchmark run."""
    simulator = Simulator(environ=environ)
    proxy = WithoutMeta(create_app(simulator))
    with SimulatorServer(simulator) as server, ThreadedServer(proxy) as bare:
        yield MirrorWorld(simulator, server.url, bare.url, proxy, settings)


@dataclass(frozen=True)
class Audit:
    """The orders table of one store against what the simulator serves now."""

    missing: int
    duplicated: int
    wrongly_flagged: int
    flagged: int
    live: int


def audit_table(engine: Engine, simulator: Simulator, store: str) -> Audit:
    """Missing = served ids up to the table's highest id that are not stored live."""
    stored = set(iter_order_ids(engine, store))
    flagged = set(deleted_ids(engine, store))
    live = stored - flagged
    last = max(stored) if stored else 0
    served = {i for i in simulator.ids(store) if i <= last}
    return Audit(
        missing=len(served - live),
        duplicated=duplicate_count(engine, store),
        wrongly_flagged=len(flagged & served),
        flagged=len(flagged),
        live=len(live),
    )
