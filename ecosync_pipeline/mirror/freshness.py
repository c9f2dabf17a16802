"""Status freshness: the orders not yet in a final state are re-read until they are.

For a cash-on-delivery shop the status is the business (Confirmé, Expédié, then Livré or
Retourné), and a page-mode sync never reads an old page again. The refresh reads the
store newest page first (reader.py) from the page of the highest synced id down to the
page of the oldest open order, at 100 a page, and repairs what it read like the
reconciliation does: every changed order updated, missing ones inserted, gone ones
flagged. Its cost is the pages between the oldest open order and the end: it grows with
the number of open orders (recent orders, for a shop whose orders settle in days), not
with the store's history.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store, StoreId
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import CallCapReached
from ecosync_pipeline.mirror.compare import MirrorCounts, repair, settle
from ecosync_pipeline.mirror.segments import PER_PAGE, descend
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.storage import StoreSummary, store_summary
from ecosync_pipeline.storage.locks import repair_lock
from ecosync_pipeline.storage.pages import transaction
from ecosync_pipeline.storage.ranges import oldest_open_order, open_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreshnessResult:
    """What one status refresh of a store read and changed."""

    store: str
    open_before: int
    open_after: int
    oldest_open_id: int | None
    counts: MirrorCounts
    api_calls: int
    seconds: float


def refresh_statuses(
    store: Store, *, client: EcoManagerClient, engine: Engine, max_calls: int | None = None
) -> FreshnessResult:
    """Re-read every open order of the store (and what lies between them) once.

    ``max_calls`` caps every call the refresh makes, the locator's and the settling ones
    included; the newest pages are read first, so the orders most likely to move are
    refreshed first. Works beside the store's sync (each page its own transaction);
    raises StoreLocked when another status refresh of the store runs.
    """
    started = time.monotonic()
    calls_before = client.stats.total
    counts = MirrorCounts()
    sid = store.identifier
    with repair_lock(engine, sid, "status refresh"):
        open_before = open_count(engine, sid, store.final_states)
        oldest = oldest_open_order(engine, sid, store.final_states)
        summary = store_summary(engine, sid)
        if oldest is not None and summary.last_order_id is not None:
            try:
                with client.call_cap(max_calls):
                    _refresh(client, engine, sid, summary, oldest, counts)
            except CallCapReached as exc:
                logger.info("%s", exc)
        open_after = open_count(engine, sid, store.final_states)
    result = FreshnessResult(
        store=sid,
        open_before=open_before,
        open_after=open_after,
        oldest_open_id=oldest,
        counts=counts,
        api_calls=client.stats.total - calls_before,
        seconds=round(time.monotonic() - started, 3),
    )
    logger.info(
        "store %s: status refresh from order %s: %d open orders before, %d after, %d updated, "
        "%d pages, %d calls",
        sid,
        oldest,
        open_before,
        open_after,
        counts.updated,
        counts.pages,
        result.api_calls,
    )
    return result


def _refresh(
    client: EcoManagerClient,
    engine: Engine,
    sid: StoreId,
    summary: StoreSummary,
    oldest: int,
    counts: MirrorCounts,
) -> None:
    """Repair each page from the store's highest id down to its oldest open order."""
    top = summary.last_order_id
    assert top is not None
    for segment in descend(
        client,
        sid,
        target=top,
        high=top,
        hint=page_hint(summary.order_count, PER_PAGE),
        floor=oldest,
    ):
        with transaction(engine, f"store {sid}: refreshing page {segment.page}") as conn:
            diff, written = repair(conn, segment)
        counts.add(diff, settle(engine, sid, written, client))
