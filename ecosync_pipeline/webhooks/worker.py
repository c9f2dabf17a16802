"""Applier: a thread of the receiver's process that applies the inbox as deliveries arrive.

The receiver wakes it after each stored delivery, so an order is in the table
milliseconds after EcoManager pushed it; it also looks every ``poll_seconds`` (a
delivery stored by another receiver process, or left pending by a crash). Stores whose
OrderCreated left a gap are handed to ``on_gap`` (e.g. to run their sync); ``readers``
gives a store's single-order reader, which settles two deliveries of one ``updated_at``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy.engine import Engine

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.config import Store, StoreId
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ConfigError, EcosyncError
from ecosync_pipeline.storage.pages import OrderReader
from ecosync_pipeline.webhooks.apply import ApplyResult, Readers, apply_pending

logger = logging.getLogger(__name__)


class StoreReaders(Closing):
    """One client per store to read single orders (settling ties), made when first needed.

    A store whose token is not set here gets None: its ties wait for the next read of
    those orders by the sync or the reconciliation.
    """

    def __init__(
        self, stores: Sequence[Store], client: Callable[[Store], EcoManagerClient]
    ) -> None:
        self._stores = {s.identifier: s for s in stores}
        self._make = client
        self._clients: dict[str, EcoManagerClient | None] = {}
        self._lock = threading.Lock()

    def __call__(self, store: StoreId) -> OrderReader | None:
        with self._lock:
            if store not in self._clients:
                self._clients[store] = self._client(store)
            return self._clients[store]

    def _client(self, store: StoreId) -> EcoManagerClient | None:
        configured = self._stores.get(store)
        if configured is None:
            return None
        try:
            return self._make(configured)
        except ConfigError as exc:
            logger.warning("store %s: ties between deliveries stay unsettled here: %s", store, exc)
            return None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                if client is not None:
                    client.close()
            self._clients.clear()


class Applier:
    """Apply pending deliveries in a background thread, woken by ``wake()``."""

    def __init__(
        self,
        engine: Engine,
        names: Mapping[str, str],
        *,
        poll_seconds: float = 2.0,
        on_gap: Callable[[str, list[int]], None] | None = None,
        readers: Readers | None = None,
    ) -> None:
        self._engine = engine
        self._names = dict(names)
        self._poll = poll_seconds
        self._on_gap = on_gap
        self._readers = readers
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = ApplyResult()

    def wake(self, store: str | None = None) -> None:
        """Apply soon (called by the receiver after it stored a delivery)."""
        self._wake.set()

    def start(self) -> Applier:
        self._thread = threading.Thread(target=self._run, name="webhook-applier", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the current batch and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def run_once(self) -> ApplyResult:
        """Apply everything pending now; errors are logged, and the next wake retries."""
        try:
            done = apply_pending(self._engine, self._names, readers=self._readers)
        except EcosyncError as exc:
            logger.error("applying webhook deliveries failed (%s); retrying shortly", exc)
            return ApplyResult()
        self.totals.add(done)
        for store, ids in done.gaps.items():
            logger.info("store %s: order %d leaves a gap above the table's last id", store, ids[0])
            if self._on_gap is not None:
                self._on_gap(store, ids)
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception as exc:  # the thread must outlive any one failure
                logger.error("webhook applier: %s; retrying at the next wake", type(exc).__name__)
