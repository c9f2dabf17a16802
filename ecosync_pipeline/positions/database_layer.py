"""Layer 3: a position computed from the orders database, the truth.

The database knows each store's frontier (the id below which the sync has proved the
table complete: storage.store_state) and how many orders it holds below it, not which
page they were on. The frontier is the target, never the table's highest id: an order a
webhook delivery or the reconciliation wrote above it does not mean the ids in between
were read (DESIGN, invariant 14). The count below the frontier gives the page hint,
``ceil(order_count / per_page)``, because the count is what page numbers are made of
(ids have gaps, so ``last id / per_page`` can be thousands of pages off). The hint is
only a starting point: the chain locates the real page on the API before using it.

A store with nothing proved is a first sync: page 1, source ``calculated``, nothing to
verify.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import Store, StoreId
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.layer import LayerName, LayerRead, Written
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.storage import StoreSummary, reading, redact, store_summaries
from ecosync_pipeline.storage.ranges import live_count_below
from ecosync_pipeline.storage.store_state import read_frontier, read_frontiers

logger = logging.getLogger(__name__)


def page_hint(order_count: int, per_page: int) -> int:
    """The page the store's last synced order would be on without deletions."""
    return max(1, math.ceil(order_count / per_page))


def proven_summary(bind: Engine | Connection, store: StoreId) -> StoreSummary | None:
    """The store's frontier and its live orders below it (None when nothing is proved)."""
    with reading(bind, f"store {store}: reading its frontier") as conn:
        frontier = read_frontier(conn, store)
        if frontier is None:
            return None
        return StoreSummary(store, frontier, live_count_below(conn, store, frontier + 1))


def proven_summaries(bind: Engine | Connection) -> dict[str, StoreSummary]:
    """Every store's frontier and live orders below it, in two queries for most stores.

    Stores without a live order below their frontier are absent, as stores without
    orders are from store_summaries. A store whose highest id is its frontier (nothing
    written above it) has its count from the table-wide summary; only the others are
    counted below the frontier.
    """
    with reading(bind, "reading every store's frontier") as conn:
        frontiers = read_frontiers(conn)
        if not frontiers:
            return {}
        tables = store_summaries(conn)
        proven: dict[str, StoreSummary] = {}
        for store, frontier in frontiers.items():
            table = tables.get(store)
            if table is not None and table.last_order_id == frontier:
                proven[store] = StoreSummary(store, frontier, table.order_count)
            else:
                count = live_count_below(conn, store, frontier + 1)
                proven[store] = StoreSummary(store, frontier, count)
        return {store: s for store, s in proven.items() if s.order_count}


def position_from_summary(store: Store, summary: StoreSummary | None) -> SyncPosition:
    """The database's position for a store: a hint to verify, or the first-sync position."""
    if summary is None or summary.order_count == 0 or summary.last_order_id is None:
        return SyncPosition.first_sync(store.identifier, store.name, store.per_page)
    return SyncPosition(
        store=store.identifier,
        store_name=store.name,
        last_page=page_hint(summary.order_count, store.per_page),
        first_id=None,
        last_id=None,
        last_order_id=summary.last_order_id,
        updated_at=utc_now(),
        source="database",
        per_page=store.per_page,
        verified=False,
    )


@dataclass(frozen=True)
class DatabaseRead(LayerRead):
    """The database's position for each store, and the summaries they come from."""

    layer: LayerName = "database"
    summaries: Mapping[str, StoreSummary] = field(default_factory=dict)

    def summary(self, store: str) -> StoreSummary | None:
        """The store's frontier and live count below it (None when nothing is proved)."""
        return self.summaries.get(store)


class DatabaseLayer:
    """Positions computed from the orders table (read only: the sync writes the orders)."""

    name: Final[LayerName] = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def location(self) -> str:
        """The orders database's URL without its password."""
        return redact(self.engine.url)

    def read_many(self, stores: Sequence[Store]) -> DatabaseRead:
        """Every store's position from one query (one store: a query on its index only)."""
        try:
            if len(stores) == 1:
                one = proven_summary(self.engine, stores[0].identifier)
                summaries = {one.store: one} if one is not None and one.order_count else {}
            else:
                summaries = proven_summaries(self.engine)
        except EcosyncError as exc:
            return DatabaseRead(error=str(exc), failure=exc)
        return DatabaseRead(
            positions={
                s.identifier: position_from_summary(s, summaries.get(s.identifier)) for s in stores
            },
            summaries=summaries,
        )

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        """Nothing to write: the sync's committed orders are this layer's positions."""
        return Written()

    def coalescing(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to gather: this layer is never written."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Nothing to release: the engine belongs to whoever opened it (the runtime)."""

    def read(self, store: Store) -> SyncPosition:
        """The store's position as the database sees it; raises StorageError if it cannot."""
        read = self.read_many([store])
        if read.failure is not None:
            raise read.failure
        return read.positions[store.identifier]
