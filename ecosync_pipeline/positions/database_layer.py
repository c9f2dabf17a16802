"""Layer 3: a position computed from the orders database, the truth.

The database knows each store's last order id and how many orders it holds, not which
page they were on. The last order id is the target; the count gives the page hint,
``ceil(order_count / per_page)``, because the count is what page numbers are made of
(ids have gaps, so ``last id / per_page`` can be thousands of pages off). The hint is
only a starting point: the chain locates the real page on the API before using it.

A store without orders is a first sync: page 1, source ``calculated``, nothing to verify.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.layer import LayerName, LayerRead, Written
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.storage import StoreSummary, redact, store_summaries, store_summary

logger = logging.getLogger(__name__)


def page_hint(order_count: int, per_page: int) -> int:
    """The page the store's last synced order would be on without deletions."""
    return max(1, math.ceil(order_count / per_page))


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
        """The store's last order id and count (None when it has no orders)."""
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
                one = store_summary(self.engine, stores[0].identifier)
                summaries = {one.store: one} if one.order_count else {}
            else:
                summaries = store_summaries(self.engine)
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
