"""Simulator: every simulated store, its control API, and the answer to one orders request.

The HTTP layer (app.py) only translates: it hands the query and the Authorization
header to ``Simulator.handle_orders``, sleeps for the returned delay, and sends the
returned status, headers and body. Everything here is thread-safe (one lock), so tests
drive the simulator from their own thread while uvicorn serves it from another.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ecosync_pipeline.config import DEFAULT_PER_PAGE, Store, load_stores
from ecosync_pipeline.lab.simulator.faults import (
    Faults,
    FaultState,
    RequestRecord,
)
from ecosync_pipeline.lab.simulator.reading import InvalidQuery, Query, order_body, orders_body
from ecosync_pipeline.lab.simulator.responder import Reply, StoreState, error, respond
from ecosync_pipeline.lab.simulator.responder import check_authorization as check_authorization
from ecosync_pipeline.lab.simulator.spec import (
    SimulatorError,
    StoreSpec,
    UnknownStore,
    demo_token,
    store_key,
)
from ecosync_pipeline.lab.simulator.store import Observer, SimStore
from ecosync_pipeline.lab.simulator.webhooks import WebhookHub

logger = logging.getLogger(__name__)


class Simulator:
    """Every simulated store, served from one object; all methods take the store id."""

    def __init__(
        self,
        specs: Iterable[StoreSpec] = (),
        *,
        seed: int = 0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.seed = seed
        self.url: str | None = None
        """Set by SimulatorServer while it serves this simulator."""
        self._environ = environ
        self._lock = threading.RLock()
        self._specs: list[StoreSpec] = []
        self._entries: dict[str, StoreState] = {}
        self._observers: list[Observer] = []
        self.webhooks = WebhookHub(self)
        """Registered webhooks and their delivery (simulator/webhooks.py)."""
        self._ticker: tuple[threading.Thread, threading.Event] | None = None
        self.configure(specs)

    @classmethod
    def from_stores(
        cls, stores: Iterable[Store], *, seed: int = 0, environ: Mapping[str, str] | None = None
    ) -> Simulator:
        """A simulator of configured stores, shaped by their ``simulator:`` keys."""
        return cls([StoreSpec.from_store(s) for s in stores], seed=seed, environ=environ)

    @classmethod
    def from_stores_file(
        cls, path: Path | str, *, seed: int = 0, environ: Mapping[str, str] | None = None
    ) -> Simulator:
        """A simulator of the stores listed in a stores YAML file."""
        return cls.from_stores(load_stores(path), seed=seed, environ=environ)

    # --- configuration -----------------------------------------------------------

    def configure(self, specs: Iterable[StoreSpec]) -> Simulator:
        """Replace every store with fresh ones built from ``specs`` (no changes, no faults)."""
        specs = list(specs)
        seen: set[str] = set()
        for spec in specs:
            if spec.identifier in seen:
                raise SimulatorError(f"store {spec.identifier} is configured twice")
            seen.add(spec.identifier)
        env = os.environ if self._environ is None else self._environ
        entries = {}
        for spec in specs:
            token = spec.token or env.get(spec.token_env) or demo_token(spec.identifier, self.seed)
            fault_seed = store_key(spec.identifier, self.seed) ^ 0xFA17
            entries[spec.identifier] = StoreState(
                SimStore(spec, self.seed, self._observers), FaultState(fault_seed), token
            )
        with self._lock:
            self._specs = specs
            self._entries = entries
        self.webhooks.clear()
        logger.debug("simulator configured with stores %s", ", ".join(seen) or "(none)")
        return self

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer`` with every Change (creation, deletion, status) of every store.

        Observers are kept across configure() and reset(); they run under the
        simulator's lock, so they must only record or enqueue.
        """
        with self._lock:
            self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling ``observer`` (no error if it was not registered)."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def reset(self) -> None:
        """Back to the initial state of the current stores (changes, faults, counts gone)."""
        self.configure(self._specs)

    def stores(self) -> list[str]:
        """The identifiers of the simulated stores, in configuration order."""
        with self._lock:
            return list(self._entries)

    def spec(self, store: str) -> StoreSpec:
        """The spec a store was built from."""
        return self._entry(store).store.spec

    def token(self, store: str) -> str:
        """The token this store accepts (export it as the store's token_env for a client)."""
        return self._entry(store).token

    def store_url(self, store: str) -> str:
        """The store's base_url while served (``{url}/{store}``)."""
        self._entry(store)
        if self.url is None:
            raise SimulatorError("the simulator is not being served; use SimulatorServer")
        return f"{self.url}/{store}"

    def as_store(self, store: str, per_page: int = DEFAULT_PER_PAGE) -> Store:
        """A config.Store pointing at this served store, as a client expects it."""
        spec = self.spec(store)
        return Store(
            identifier=spec.identifier,
            name=spec.name,
            base_url=self.store_url(store),
            token_env=spec.token_env,
            per_page=per_page,
        )

    def _entry(self, store: str) -> StoreState:
        with self._lock:
            entry = self._entries.get(store)
            if entry is not None:
                self._advance(entry)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise UnknownStore(f"store {store} is not simulated (simulated stores: {known})")
        return entry

    def _advance(self, entry: StoreState) -> None:
        """Apply the status moves due since the store was last looked at (status flow)."""
        f = entry.faults.faults
        open_count = len(entry.store.open_ids()) if f.status_flow_rate > 0 else 0
        due = entry.clock.due(time.monotonic(), f.status_flow_rate, f.time_scale, open_count)
        if due:
            entry.store.advance_statuses(due)

    def start_clock(self, interval: float = 0.1) -> None:
        """Tick every ``interval`` seconds from a daemon thread until stop_clock()."""
        with self._lock:
            if self._ticker is not None:
                return
            stopping = threading.Event()

            def run() -> None:
                while not stopping.wait(interval):
                    self.tick()

            self._ticker = (
                threading.Thread(target=run, name="simulator-clock", daemon=True),
                stopping,
            )
            self._ticker[0].start()

    def stop_clock(self) -> None:
        """Stop the thread start_clock() started (no error if none runs)."""
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker[1].set()
            ticker[0].join(timeout=5)

    def tick(self) -> None:
        """Apply every store's due status moves now (a served simulator does this often,
        so observers see the changes as they happen rather than at the next request)."""
        with self._lock:
            for entry in self._entries.values():
                self._advance(entry)

    # --- ground truth ------------------------------------------------------------

    def count(self, store: str) -> int:
        """How many orders the store serves now."""
        with self._lock:
            return len(self._entry(store).store)

    def first_id(self, store: str) -> int | None:
        """The lowest id served now (None when the store is empty)."""
        with self._lock:
            return self._entry(store).store.first_id

    def last_id(self, store: str) -> int | None:
        """The highest id served now (None when the store is empty)."""
        with self._lock:
            return self._entry(store).store.last_id

    def last_page(self, store: str, per_page: int = DEFAULT_PER_PAGE) -> int:
        """The last page holding orders now (1 for an empty store)."""
        return max(1, math.ceil(self.count(store) / per_page))

    def ids(self, store: str) -> Iterator[int]:
        """Every id served now, ascending, streamed (later changes do not affect it)."""
        with self._lock:
            return self._entry(store).store.snapshot()

    def page_ids(self, store: str, page: int, per_page: int = DEFAULT_PER_PAGE) -> list[int]:
        """The ids on a page now, without faults and without counting a request."""
        with self._lock:
            return self._entry(store).store.page_ids(page, per_page)

    def page_of(self, store: str, order_id: int, per_page: int = DEFAULT_PER_PAGE) -> int | None:
        """The page that holds ``order_id`` now, or None if it is not served."""
        with self._lock:
            return self._entry(store).store.page_of(order_id, per_page)

    def contains(self, store: str, order_id: int) -> bool:
        """Whether ``order_id`` is served now."""
        with self._lock:
            return self._entry(store).store.contains(order_id)

    def order(self, store: str, order_id: int) -> dict[str, Any] | None:
        """The order as served now, or None if it is not served."""
        with self._lock:
            st = self._entry(store).store
            return st.order(order_id) if st.contains(order_id) else None

    # --- changes -----------------------------------------------------------------

    def add_orders(self, store: str, count: int = 1) -> list[int]:
        """Append ``count`` new orders after the last id; return their ids."""
        with self._lock:
            return self._entry(store).store.add(count)

    def added(self, store: str) -> int:
        """How many orders were appended since the store's initial ones (``added`` of a spec)."""
        with self._lock:
            return self._entry(store).store.created

    def delete_orders(self, store: str, ids: Iterable[int]) -> list[int]:
        """Delete these ids (later orders shift towards page 1); return those deleted."""
        with self._lock:
            return self._entry(store).store.delete(ids)

    def delete_random(
        self, store: str, n: int, *, min_id: int | None = None, max_id: int | None = None
    ) -> list[int]:
        """Delete ``n`` random orders (optionally within [min_id, max_id]); return their ids."""
        with self._lock:
            return self._entry(store).store.delete_random(n, min_id, max_id)

    def set_status(
        self, store: str, order_id: int, status: str, confirmation: str | None = None
    ) -> None:
        """Change an order's order_state_name (and confirmation); updated_at moves on."""
        with self._lock:
            self._entry(store).store.set_status(order_id, status, confirmation)

    def change_random_statuses(self, store: str, n: int) -> list[int]:
        """Move ``n`` random orders to their next state; return their ids."""
        with self._lock:
            return self._entry(store).store.change_random_statuses(n)

    def advance_statuses(self, store: str, n: int) -> list[int]:
        """Move ``n`` random open orders one state along the flow at once; return their ids
        (an order may appear more than once; fewer when every order is final)."""
        with self._lock:
            return self._entry(store).store.advance_statuses(n)

    def open_ids(self, store: str) -> list[int]:
        """The ids of the store's orders not yet in a final state (Livré, Annulé, Retourné)."""
        with self._lock:
            return self._entry(store).store.open_ids()

    def swap_orders(self, store: str, n: int) -> tuple[list[int], list[int]]:
        """Delete ``n`` random orders and add as many at the same instant: (deleted, added)."""
        with self._lock:
            return self._entry(store).store.swap(n)

    # --- faults and counts -------------------------------------------------------

    def set_faults(self, store: str | None, **switches: Any) -> Faults:
        """Change fault switches of one store (or of every store with None).

        Returns the resulting switches (of the last store changed).
        """
        with self._lock:
            if store is None:
                self.tick()  # moves due under the old switches happen first
            targets = [self._entry(store)] if store is not None else list(self._entries.values())
            result = Faults().updated(**switches)
            for entry in targets:
                result = entry.faults.faults.updated(**switches)
                entry.faults.faults = result
                entry.store.large_orders = (result.large_order_rate, result.large_order_lines)
            return result

    def faults(self, store: str) -> Faults:
        """The store's current switches."""
        with self._lock:
            return self._entry(store).faults.faults

    def clear_faults(self, store: str | None = None) -> None:
        """Back to a well-behaved server (switches and scripted failures)."""
        with self._lock:
            targets = [self._entry(store)] if store is not None else list(self._entries.values())
            for entry in targets:
                entry.faults.faults = Faults()
                entry.faults.scripted.clear()
                entry.store.large_orders = (0.0, 0)

    def fail_next(self, store: str, n: int, kind: str) -> None:
        """Make the next ``n`` orders requests of the store fail with ``kind`` (a FailKind)."""
        with self._lock:
            self._entry(store).faults.fail_next(n, kind)

    def request_count(self, store: str, outcome: str | None = None) -> int:
        """Orders requests received by the store (of one outcome, or all)."""
        with self._lock:
            return self._entry(store).faults.counts["total" if outcome is None else outcome]

    def stats(self, store: str) -> dict[str, int]:
        """Orders requests by outcome (every Outcome key, plus 'total')."""
        with self._lock:
            return self._entry(store).faults.stats()

    def requests(self, store: str) -> list[RequestRecord]:
        """The store's recent orders requests (the last 10,000), oldest first."""
        with self._lock:
            return list(self._entry(store).faults.log)

    def reset_counts(self, store: str | None = None) -> None:
        """Forget request counts and logs (of one store or all)."""
        with self._lock:
            targets = [self._entry(store)] if store is not None else list(self._entries.values())
            for entry in targets:
                entry.faults.reset_counts()

    def window_usage(self, store: str) -> dict[str, dict[str, Any]]:
        """Per rate-limit window: its limit, requests counted, refused, seconds to reset."""
        with self._lock:
            return self._window_usage(self._entry(store))

    @staticmethod
    def _window_usage(entry: StoreState) -> dict[str, dict[str, Any]]:
        f = entry.faults.faults
        return entry.faults.windows.usage(time.monotonic(), f.window_limits(), f.time_scale)

    def describe(self, store: str) -> dict[str, Any]:
        """A JSON-ready summary: size, ids, pages, switches and request counts."""
        with self._lock:
            entry = self._entry(store)
            st = entry.store
            return {
                "store": store,
                "name": st.spec.name,
                "count": len(st),
                "first_id": st.first_id,
                "last_id": st.last_id,
                "last_page": max(1, math.ceil(len(st) / DEFAULT_PER_PAGE)),
                "open_orders": len(st.open_ids()),
                "rate_windows": self._window_usage(entry),
                "requests": entry.faults.stats(),
                "faults": entry.faults.faults.as_dict(),
                "scripted_failures": len(entry.faults.scripted),
            }

    # --- serving -----------------------------------------------------------------

    def handle_orders(
        self,
        store: str,
        *,
        page: str | None = None,
        per_page: str | None = None,
        authorization: str | None,
        path: str,
        query: Mapping[str, str] | None = None,
    ) -> Reply:
        """The reply to ``GET {path}?{query}`` with this Authorization header.

        ``query`` holds every parameter (see reading.py for the modes); ``page`` and
        ``per_page``, when given, override it.
        """
        params = dict(query or {})
        for name, value in (("page", page), ("per_page", per_page)):
            if value is not None:
                params[name] = value
        with self._lock:
            entry = self._entries.get(store)
            if entry is None:
                return error(404, "not_found")
            self._advance(entry)
            f = entry.faults.faults
            try:
                parsed = Query.parse(params, cursor_mode=f.cursor_mode, sort_mode=f.sort_mode)
            except InvalidQuery as exc:
                # Answered after the token check, as a server validates after authenticating.
                problem = str(exc)
                return respond(entry, authorization, Query("pages", 1, 0), problem)
            return respond(
                entry, authorization, parsed, lambda: orders_body(entry.store, parsed, path)
            )

    def handle_order(self, store: str, order_id: int, *, authorization: str | None) -> Reply:
        """The reply to ``GET .../orders/{order_id}`` (404 once the order is deleted)."""
        with self._lock:
            entry = self._entries.get(store)
            if entry is None:
                return error(404, "not_found")
            self._advance(entry)
            parsed = Query("order", order_id, 1)
            return respond(entry, authorization, parsed, lambda: order_body(entry.store, order_id))
