"""The page upsert and the per-store reads, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import validate_store_identifier
from ecosync_pipeline.errors import ConfigError, StorageError
from ecosync_pipeline.storage import (
    StoreSummary,
    UpsertCounts,
    duplicate_count,
    ensure_store,
    iter_order_ids,
    order_state,
    orders,
    orders_after,
    reading,
    store_summaries,
    store_summary,
    stores,
    upsert_orders,
)
from ecosync_pipeline.storage.schema import ORDERS_UNIQUE
from ecosync_pipeline_tests.test_storage.factories import T0, make_order, make_page


def _write(engine: Engine, store: str, page: list[Any], **kw: Any) -> UpsertCounts:
    with engine.begin() as conn:
        return upsert_orders(conn, store, page, **kw)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def natur(engine: Engine) -> Engine:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur Cosmetics")
    return engine


def test_upsert_inserts_a_page_then_reupsert_reports_unchanged_without_duplicates(
    natur: Engine,
) -> None:
    page = make_page(181_582, 20)
    assert _write(natur, "NATUR", page) == UpsertCounts(new=20)
    assert _write(natur, "NATUR", page) == UpsertCounts(unchanged=20)
    with natur.connect() as conn:
        assert conn.execute(select(func.count()).select_from(orders)).scalar() == 20
    assert duplicate_count(natur, "NATUR") == 0


def test_overlapping_page_counts_new_and_reread_orders_separately(natur: Engine) -> None:
    _write(natur, "NATUR", make_page(1, 20))
    # The same page read after an order was deleted upstream: shifted by one slot.
    counts = _write(natur, "NATUR", make_page(2, 20))
    assert counts == UpsertCounts(new=1, unchanged=19)
    assert store_summary(natur, "NATUR") == StoreSummary("NATUR", 21, 21)


def test_status_change_is_applied_on_reupsert_and_first_seen_is_kept(natur: Engine) -> None:
    first = T0 + timedelta(days=1)
    later = first + timedelta(hours=5)
    _write(natur, "NATUR", [make_order(42, "En cours")], seen_at=first)
    changed = make_order(
        42, "Livré", confirmation_state_name="Confirmé", total=Decimal("3100.00"), updated_at=later
    )
    assert _write(natur, "NATUR", [changed], seen_at=later) == UpsertCounts(updated=1)
    assert order_state(natur, "NATUR", 42) == "Livré"
    (row,) = orders_after(natur, "NATUR", None, 10)
    assert row["total"] == Decimal("3100.00")
    assert row["updated_at"] == later
    assert row["first_seen_at"] == first
    assert row["last_seen_at"] == later


def test_a_new_page_is_one_insert_and_a_reread_page_one_update(natur: Engine) -> None:
    def statements(page: list[Any]) -> list[str]:
        with _statements(natur) as seen:
            _write(natur, "NATUR", page)
        return [s.upper() for s in seen if not s.upper().startswith(("BEGIN", "COMMIT"))]

    pages = [make_page(1 + p * 20, 20) for p in range(3)]
    for page in pages:
        new = statements(page)
        assert [s for s in new if s.startswith("INSERT INTO ORDERS")] == new[-1:]
        # Besides the INSERT, at most SQLite's lookup of the ids already stored.
        assert len(new) <= 2
    again = statements(pages[1])
    assert len([s for s in again if s.startswith("UPDATE ORDERS")]) == 1
    # The stored rows the rule reads (and, on PostgreSQL, the INSERT that found them).
    assert len(again) <= 3


def test_batch_of_pages_is_also_one_statement(natur: Engine) -> None:
    batch = [o for p in range(10) for o in make_page(1 + p * 20, 20)]
    with _statements(natur) as seen:
        assert _write(natur, "NATUR", batch) == UpsertCounts(new=200)
    assert len([s for s in seen if s.upper().startswith("INSERT INTO ORDERS")]) == 1


def test_same_order_twice_at_one_updated_at_is_a_tie_not_the_last_one_winning(
    natur: Engine,
) -> None:
    counts = _write(natur, "NATUR", [make_order(7, "En cours"), make_order(7, "Annulé")])
    assert counts == UpsertCounts(new=1, ties=(7,))
    assert order_state(natur, "NATUR", 7) == "En cours"  # until EcoManager is asked
    later = make_order(7, "Annulé", updated_at=T0 + timedelta(seconds=1))
    assert _write(natur, "NATUR", [later]) == UpsertCounts(updated=1)
    assert order_state(natur, "NATUR", 7) == "Annulé"


def test_empty_page_writes_nothing(natur: Engine) -> None:
    with _statements(natur) as seen:
        assert _write(natur, "NATUR", []) == UpsertCounts(0, 0)
    assert not [s for s in seen if s.upper().startswith("INSERT")]


def test_every_column_round_trips_exactly(natur: Engine) -> None:
    created = datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    order = make_order(
        5,
        items=(
            {"sku": "A", "selling_price": Decimal("19.99"), "qty": 1},
            {"sku": "B", "tags": ("x", "y")},
        ),
        total_products=Decimal("1234567890.12"),
        total=Decimal("0.005"),
        created_at=created,
        updated_at=datetime(2024, 5, 2, 10, 0),
    )
    _write(natur, "NATUR", [order])
    (row,) = orders_after(natur, "NATUR", None, 1)
    assert row["reference"] == "NATUR5"
    assert row["items"] == [
        {"sku": "A", "selling_price": "19.99", "qty": 1},
        {"sku": "B", "tags": ["x", "y"]},
    ]
    assert row["total_products"] == Decimal("1234567890.12")
    assert row["total"] == Decimal("0.01")  # rounded to the cent, half up
    assert row["created_at"] == created and row["created_at"].tzinfo is not None
    # A naive EcoManager timestamp is taken as UTC.
    assert row["updated_at"] == datetime(2024, 5, 2, 10, 0, tzinfo=timezone.utc)


def test_upsert_for_an_unregistered_store_raises_storage_error_naming_it(engine: Engine) -> None:
    with pytest.raises(StorageError, match=r"store GHOST: writing 2 orders \(ids 1\.\.2\)"):
        _write(engine, "GHOST", make_page(1, 2))


def test_invalid_store_identifier_never_reaches_sql(engine: Engine) -> None:
    # The writes and reads take a StoreId (test_runtime checks their signatures, mypy
    # their callers), and no StoreId can be made of these: they stop where they come in.
    for bad in ("NATUR'; DROP TABLE orders;--", "../etc"):
        with pytest.raises(ConfigError):
            _write(engine, validate_store_identifier(bad), make_page(1, 1))
    assert store_summary(engine, validate_store_identifier("NATUR")).order_count == 0


def test_ensure_store_creates_once_and_follows_renames(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        ensure_store(conn, "NATUR", "Natur")
        created = conn.execute(select(stores.c.created_at)).scalar_one()
        ensure_store(conn, "NATUR", "Natur Cosmetics")
    with engine.connect() as conn:
        row = conn.execute(select(stores)).one()
    assert (row.identifier, row.name, row.created_at) == ("NATUR", "Natur Cosmetics", created)


def test_summaries_cover_every_store_with_orders_and_omit_empty_ones(engine: Engine) -> None:
    with engine.begin() as conn:
        for store in ("NATUR", "PURNA", "DILST", "EMPTY"):
            ensure_store(conn, store, store.title())
        upsert_orders(conn, "NATUR", make_page(181_582, 20))
        upsert_orders(conn, "PURNA", make_page(9_000, 30, step=17))
        upsert_orders(conn, "DILST", [make_order(3)])
    assert store_summaries(engine) == {
        "NATUR": StoreSummary("NATUR", 181_601, 20),
        "PURNA": StoreSummary("PURNA", 9_000 + 29 * 17, 30),
        "DILST": StoreSummary("DILST", 3, 1),
    }
    assert store_summary(engine, "EMPTY") == StoreSummary("EMPTY", None, 0)
    with engine.connect() as conn:  # a Connection works as well as an Engine
        assert store_summary(conn, "PURNA").order_count == 30
        assert set(store_summaries(conn)) == {"NATUR", "PURNA", "DILST"}


def test_iter_order_ids_walks_every_batch_in_order(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        ensure_store(conn, "PURNA", "Purna")
        upsert_orders(conn, "NATUR", make_page(100, 250, step=3))
        upsert_orders(conn, "PURNA", make_page(1, 10))
    expected = [100 + 3 * i for i in range(250)]
    assert list(iter_order_ids(engine, "NATUR", batch=100)) == expected
    assert list(iter_order_ids(engine, "NATUR", batch=50)) == expected  # exact multiple
    assert list(iter_order_ids(engine, "PURNA", batch=1000)) == list(range(1, 11))
    assert list(iter_order_ids(engine, "NOBODY")) == []


def test_iter_order_ids_reads_in_batches_not_all_at_once(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 95))
    with _statements(engine) as seen:
        ids = iter_order_ids(engine, "NATUR", batch=30)
        assert [next(ids) for _ in range(3)] == [1, 2, 3]
        assert len([s for s in seen if s.upper().startswith("SELECT")]) == 1
        assert len(list(ids)) == 92
    assert len([s for s in seen if s.upper().startswith("SELECT")]) == 4


def test_orders_after_returns_the_next_orders_in_id_order(natur: Engine) -> None:
    _write(natur, "NATUR", make_page(10, 20, step=2))
    rows = orders_after(natur, "NATUR", 30, 3)
    assert [r["order_id"] for r in rows] == [32, 34, 36]
    assert "id" not in rows[0] and rows[0]["store"] == "NATUR"
    assert [r["order_id"] for r in orders_after(natur, "NATUR", None, 2)] == [10, 12]
    assert orders_after(natur, "NATUR", 48, 5) == []


def test_order_state_of_a_missing_order_is_none(natur: Engine) -> None:
    assert order_state(natur, "NATUR", 999) is None


def test_unique_index_on_store_and_order_id_exists(engine: Engine) -> None:
    insp = inspect(engine)
    uniques = {u["name"]: u["column_names"] for u in insp.get_unique_constraints("orders")}
    assert uniques[ORDERS_UNIQUE] == ["store", "order_id"]


def test_duplicate_count_reports_rows_the_constraint_should_have_refused(
    pg_engine: Engine,
) -> None:
    engine = pg_engine
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 3))
        conn.execute(text(f"ALTER TABLE orders DROP CONSTRAINT {ORDERS_UNIQUE}"))
        conn.execute(
            text(
                "INSERT INTO orders (store, order_id, items, first_seen_at, last_seen_at) "
                "SELECT store, order_id, items, first_seen_at, last_seen_at FROM orders "
                "WHERE order_id IN (1, 2)"
            )
        )
    assert duplicate_count(engine, "NATUR") == 2


def test_postgres_summary_query_is_answered_from_the_unique_index(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        for i, store in enumerate(("NATUR", "PURNA", "DILST")):
            ensure_store(conn, store, store)
            upsert_orders(conn, store, make_page(1 + i * 1000, 900))
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE orders")
    summary = select(orders.c.store, func.max(orders.c.order_id), func.count()).group_by(
        orders.c.store
    )
    compiled = summary.compile(pg_engine, compile_kwargs={"literal_binds": True})
    with pg_engine.connect() as conn:
        # Tiny tables favour a sequential scan; what matters is that the index can serve it.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
    assert f"Index Only Scan using {ORDERS_UNIQUE}" in plan


def test_reads_leave_no_transaction_open_on_postgresql(pg_engine: Engine) -> None:
    """Between reads on one connection (the check's API call comes there), the session
    is idle, not idle in a transaction holding its locks."""
    with reading(pg_engine, "test reads") as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        store_summary(conn, "NATUR")
        with pg_engine.connect() as other:
            state = other.execute(
                text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
    assert state == "idle"
