"""Page fetchers built from id lists, and helpers to fill the orders database."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.storage import ensure_store, orders, upsert_orders
from ecosync_pipeline.storage.store_state import prove_frontier


class ListFetcher:
    """A store served from a sorted id list, counting every fetch (like the client's stats)."""

    def __init__(self, ids: Iterable[int], store: str = "TEST", per_page: int = 20) -> None:
        self.ids = sorted(set(ids))
        self.store = store
        self.per_page = per_page
        self.calls: list[int] = []
        self.closed = False

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        size = per_page or self.per_page
        self.calls.append(page)
        chunk = self.ids[(page - 1) * size : page * size]
        return Page(
            store=self.store,
            number=page,
            per_page=size,
            orders=tuple(Order(id=i) for i in chunk),
            last_page=max(1, math.ceil(len(self.ids) / size)),
            total=len(self.ids),
        )

    def delete(self, *ids: int) -> None:
        """Delete orders (later ones shift towards page 1)."""
        gone = set(ids)
        self.ids = [i for i in self.ids if i not in gone]

    def close(self) -> None:
        self.closed = True

    @property
    def fetches(self) -> int:
        return len(self.calls)


class FailingFetcher:
    """A fetcher whose every call raises the given error."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        self.calls += 1
        raise self.error


def resume_page(ids: Sequence[int], target: int | None, per_page: int) -> int:
    """The definition: the last page whose first id is <= target, else page 1."""
    if target is None:
        return 1
    below = bisect_right(sorted(ids), target)
    return 1 if below == 0 else (below - 1) // per_page + 1


def ids_with_gaps(count: int, start: int = 1, every: int = 7) -> list[int]:
    """``count`` ids from ``start``, skipping every ``every``-th one (deleted orders)."""
    ids: list[int] = []
    current = start
    while len(ids) < count:
        if (current - start) % every != every - 1:
            ids.append(current)
        current += 1
    return ids


def store(identifier: str = "TEST", per_page: int = 20) -> Store:
    return Store(
        identifier=identifier,
        name=f"{identifier} shop",
        base_url="http://127.0.0.1:1",
        token_env=f"TOKEN_{identifier}",
        per_page=per_page,
    )


def fill_orders(engine: Engine, store_id: str, ids: Iterable[int]) -> None:
    """Commit orders with these ids for the store (what a finished sync leaves).

    A plain executemany: the sync's upsert is tested with the storage, and the scenarios
    here only need the ids in place, quickly.
    """
    now = datetime.now(timezone.utc)
    rows = [
        {"store": store_id, "order_id": i, "items": [], "first_seen_at": now, "last_seen_at": now}
        for i in ids
    ]
    with engine.begin() as conn:
        ensure_store(conn, store_id, f"{store_id} shop")
        if rows:
            conn.execute(orders.insert(), rows)
            # The sync proves what it read, in the same transaction (its frontier).
            prove_frontier(conn, store_id, max(r["order_id"] for r in rows))


def upsert_ids(engine: Engine, store_id: str, ids: Iterable[int]) -> None:
    """Commit orders through the sync's own upsert, and its frontier with them."""
    wanted = list(ids)
    with engine.begin() as conn:
        ensure_store(conn, store_id, f"{store_id} shop")
        upsert_orders(conn, store_id, [Order(id=i) for i in wanted])
        prove_frontier(conn, store_id, max(wanted, default=None))
