"""A store's sync in cursor mode: newest first with the keyset cursor, committed oldest first.

For a store whose ``read_mode`` is ``cursor``, the sync reads ``sort_direction=desc``
pages of 100, following ``meta.next_cursor``, until a page holds an id at or below the
table's highest id for the store (or the cursor ends: a first import reads it all). A
keyset cursor is "ids below X", so an order deleted or added meanwhile cannot make the
reader skip one: no page number is involved, and no sync position is needed; the
table's last id is the only state, and a cache loss costs nothing.

The pages read are spooled to a temporary file and committed oldest first, one page a
transaction, so a crash at any point leaves the table's highest id with every id below
it committed: the next run reads down to it again and loses nothing. Memory stays one
page, whatever the number of new orders.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import MalformedPage
from ecosync_pipeline.storage import ensure_store, store_lock, store_summary
from ecosync_pipeline.storage.pages import transaction, write_page
from ecosync_pipeline.storage.store_state import record_sync_window
from ecosync_pipeline.sync.engine import SyncResult

logger = logging.getLogger(__name__)


class _Spool:
    """Pages kept on disk in read order (newest first), given back oldest first."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._offsets: list[int] = []

    def add(self, page: Page) -> None:
        self._offsets.append(self._file.tell())
        pickle.dump(page, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def oldest_first(self) -> Iterator[Page]:
        for offset in reversed(self._offsets):
            self._file.seek(offset)
            page = pickle.load(self._file)
            assert isinstance(page, Page)
            yield page


def _read_newest(client: EcoManagerClient, store: Store, floor: int | None, spool: _Spool) -> int:
    """Spool the pages above ``floor``, newest first; return how many pages were read."""
    cursor: str | None = None
    number = 0
    below: int | None = None
    while True:
        number += 1
        page = client.fetch_newest(cursor, number=number)
        if below is not None and page.last_id is not None and page.last_id >= below:
            raise MalformedPage(
                f"store {store.identifier}: newest-first page {number} holds id "
                f"{page.last_id}, not below the previous page's lowest id {below}: the "
                "server's cursor breaks the contract; set read_mode: pages for this store",
                store=store.identifier,
                page=number,
            )
        fresh = [o for o in page.orders if floor is None or o.id > floor]
        if fresh:
            spool.add(Page(store.identifier, number, page.per_page, tuple(fresh)))
        reached = floor is not None and len(fresh) < len(page.orders)
        if reached or page.next_cursor is None or page.is_empty:
            return number
        below = page.first_id
        cursor = page.next_cursor


def sync_by_cursor(
    store: Store,
    *,
    client: EcoManagerClient,
    engine: Engine,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Sync one cursor-mode store: read down to the table's last id, commit oldest first.

    Raises StoreLocked, ApiError (MalformedPage for a server without the cursor mode)
    or StorageError; what was committed stays, and the next run reads down to it.
    """
    started = clock()
    calls_before = client.stats.total
    sid = store.identifier
    with store_lock(engine, sid) as lease:
        with transaction(engine, f"store {sid}: registering the store") as conn:
            ensure_store(conn, sid, store.name)
        floor = store_summary(engine, sid).last_order_id
        with tempfile.TemporaryFile(prefix="ecosync-cursor-") as file:
            spool = _Spool(file)
            pages = _read_newest(client, store, floor, spool)
            new = updated = 0
            last = floor
            for page in spool.oldest_first():
                counts = write_page(
                    engine, sid, page.number, page.orders, fence=lease.verify, reader=client
                )
                new += counts.new
                updated += counts.updated
                last = page.last_id if last is None else max(last, page.last_id or last)
        with transaction(engine, f"store {sid}: recording the run") as conn:
            lease.verify(conn)
            record_sync_window(conn, sid, floor, last)
    result = SyncResult(
        store=sid,
        pages_fetched=pages,
        api_calls=client.stats.total - calls_before,
        verification_calls=0,
        orders_new=new,
        orders_updated=updated,
        from_page=1,
        to_page=pages,
        position_source="database",
        seconds=round(clock() - started, 3),
        stopped_by_budget=False,
        reached_end=True,
        last_order_id_before=floor,
        last_order_id=last,
    )
    logger.info(
        "store %s: cursor read of %d pages down to order id %s: %d new and %d updated "
        "orders, %d API calls, %.1f s",
        sid,
        pages,
        floor,
        new,
        updated,
        result.api_calls,
        result.seconds,
    )
    return result
