"""A batch of stores synced concurrently in one process, each store on its own.

Every store runs ``Runtime.sync`` (its own lock, its own client and rate limiter), then
the completeness count and audit its check needs, in a pool of ``workers`` threads: the
work is mostly waiting on EcoManager and the database, so threads overlap it. A store that
fails is reported with its error and never stops the others. Outcomes come back as each
store finishes, so a caller (the new_orders asset, the benchmarks) can record each store
at once. The batch runs on what one process has built (``BatchRuntime``: the
composition root's Runtime), and imports nothing of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.ecomanager.budget import Quota, shared_budget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.memo import PageMemo
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.mirror.completeness import WindowAudit, audit_window
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.positions.factory import Chain
from ecosync_pipeline.positions.recovery import ServedCount, count_served_through
from ecosync_pipeline.storage import StoreSummary, orders_after, reading, store_summary
from ecosync_pipeline.storage.store_state import SyncWindow, last_sync_window
from ecosync_pipeline.sync.engine import SyncResult

logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
DEFAULT_BATCH_SIZE = 500
"""Stores a scheduled run: a thousand stores are two runs, one for each core of a small
machine (a run is one process, its stores sharing one interpreter)."""


def default_runs() -> int:
    """Runs a tick is split into at least (ECOSYNC_SYNC_RUNS): one per CPU of this machine."""
    return os.cpu_count() or 1


# Each worker holds up to two connections of the orders database pool (the store lock
# and a transaction); SQLAlchemy's default pool gives 15.
MAX_WORKERS = 7
PREVIEW_ROWS = 10


class BatchRuntime(Protocol):
    """What a batch uses of its process's runtime (ecosync_pipeline.runtime.Runtime)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def chain(self) -> Chain: ...

    def store(self, identifier: str) -> Store:
        """The configured store with this identifier (ConfigError if none)."""
        ...

    def client(self, store: Store) -> EcoManagerClient:
        """A client for ``store`` (closed by the caller)."""
        ...

    def sync(
        self,
        identifier: str,
        *,
        budget_seconds: float | None = None,
        client: EcoManagerClient | None = None,
    ) -> SyncResult:
        """Sync one store with ``client`` (left open)."""
        ...


@dataclass(frozen=True)
class StoreOutcome:
    """One store's part of a batch: its sync and check figures, or the error that stopped it."""

    store: str
    result: SyncResult | None = None
    preview: tuple[dict[str, Any], ...] = ()
    summary: StoreSummary | None = None
    served: ServedCount | None = None
    audit: WindowAudit | None = None
    quota: Quota | None = None
    """The store's shared rate budget after its sync: calls used and left per window."""
    error: EcosyncError | None = None


def sync_and_count(
    runtime: BatchRuntime,
    store_id: str,
    budget_seconds: float | None,
    *,
    sync: bool = True,
    check: bool = True,
) -> StoreOutcome:
    """Sync one store (unless ``sync`` is False), then read what its metadata and its
    completeness check need.

    One client serves the store's whole turn, and the check reuses the pages the sync
    has just read where one answer is as good as a new one (see ecomanager/memo.py):
    an idle store's check costs no call of its own.
    """
    store = runtime.store(store_id)
    with runtime.client(store) as client:
        memo = PageMemo(client)
        result = (
            runtime.sync(store_id, budget_seconds=budget_seconds, client=client) if sync else None
        )
        # An idle store (most of a tick's) has nothing to preview: no query for it.
        after = result.last_order_id_before if result is not None else None
        preview = (
            orders_after(runtime.engine, store.identifier, after, PREVIEW_ROWS)
            if result is not None and result.orders_new
            else []
        )
        # The summary and the check's reads share one connection (see storage.reading).
        with reading(runtime.engine, f"store {store_id}: reading its orders for the check") as db:
            summary = store_summary(db, store.identifier)
            served = count_served(runtime, summary, memo) if check else None
            audit = audit_last_window(runtime, summary, memo, db) if check else None
    quota = shared_budget(store, runtime.settings.redis_url).quota()
    return StoreOutcome(store_id, result, tuple(preview), summary, served, audit, quota)


def count_served(
    runtime: BatchRuntime, summary: StoreSummary, memo: PageMemo | None = None
) -> ServedCount:
    """What EcoManager serves up to the store's last order id in the database.

    With ``memo``, a page the store's sync has just read is taken from it, not fetched.
    """
    store = runtime.store(summary.store)
    hint = page_hint(summary.order_count, store.per_page)
    if memo is not None:
        return count_served_through(memo, store, summary.last_order_id, hint)
    with runtime.client(store) as client:
        return count_served_through(client, store, summary.last_order_id, hint)


def audit_last_window(
    runtime: BatchRuntime,
    summary: StoreSummary,
    memo: PageMemo | None = None,
    bind: Engine | Connection | None = None,
) -> WindowAudit | None:
    """The id-set audit of the window the store's last sync read (None before any sync).

    With ``memo``, a page the sync has just read stands in for the audit's only when
    it covers the whole window by itself; any other window is read fresh. ``bind``: the
    connection to read the database on (the engine's by default).
    """
    db = bind if bind is not None else runtime.engine
    window = last_sync_window(db, runtime.store(summary.store).identifier)
    if window is None:
        if summary.last_order_id is None:
            return None
        window = SyncWindow(summary.last_order_id, summary.last_order_id)
    store = runtime.store(summary.store)
    if memo is not None:
        reader = memo.covering(window.low, window.high)
        return audit_window(reader, db, store.identifier, window)
    with runtime.client(store) as client:
        return audit_window(client, db, store.identifier, window)


def _guarded(
    runtime: BatchRuntime, store_id: str, budget_seconds: float | None, sync: bool, check: bool
) -> StoreOutcome:
    try:
        return sync_and_count(runtime, store_id, budget_seconds, sync=sync, check=check)
    except EcosyncError as exc:
        logger.warning("store %s: %s: %s", store_id, type(exc).__name__, exc)
        return StoreOutcome(store_id, error=exc)


def sync_batch(
    runtime: BatchRuntime,
    stores: Sequence[str],
    *,
    workers: int = DEFAULT_WORKERS,
    budget_seconds: float | None = None,
    sync: bool = True,
    check: bool = True,
) -> Iterator[StoreOutcome]:
    """Sync ``stores`` with at most ``workers`` at once, yielding each outcome as it ends.

    An error that is not ours (a bug) still propagates, after the running stores finish.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be from 1 to {MAX_WORKERS}, got {workers}")
    if workers == 1 or len(stores) == 1:
        with runtime.chain.backup.coalescing():
            for store_id in stores:
                yield _guarded(runtime, store_id, budget_seconds, sync, check)
        return
    # The stores' backup writes land together, about once a second (json_layer).
    with (
        runtime.chain.backup.coalescing(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecosync-store") as pool,
    ):
        futures: list[Future[StoreOutcome]] = [
            pool.submit(_guarded, runtime, store_id, budget_seconds, sync, check)
            for store_id in stores
        ]
        for future in as_completed(futures):
            yield future.result()
