"""Migrations: a new database gets the current schema, an old one keeps its data."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    current_version,
    ensure_store,
    make_engine,
    metadata,
    migrate,
    orders_after,
    schema_version,
    upsert_orders,
)
from ecosync_pipeline.storage.schema import ORDERS_SEEN_INDEX, ORDERS_UNIQUE
from ecosync_pipeline_tests.test_storage.factories import make_page


def _shape(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, nullable), unique constraints and indexes, as reflected."""
    insp = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        shape[table] = {
            "columns": sorted((c["name"], bool(c["nullable"])) for c in insp.get_columns(table)),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]))
                for i in insp.get_indexes(table)
                # PostgreSQL reports a unique constraint's index too.
                if not i.get("duplicates_constraint")
            ),
            "pk": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
        }
    return shape


def _model_shape() -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        shape[table.name] = {
            "columns": sorted((c.name, bool(c.nullable)) for c in table.columns),
            "unique": sorted(
                (str(u.name), tuple(c.name for c in u.columns))
                for u in table.constraints
                if u.__visit_name__ == "unique_constraint"
            ),
            "indexes": sorted(
                (str(i.name), tuple(c.name for c in i.columns)) for i in table.indexes
            ),
            "pk": tuple(c.name for c in table.primary_key.columns),
            "fks": sorted(
                (tuple(fk.parent.name for fk in c.elements), c.referred_table.name)
                for c in table.foreign_key_constraints
            ),
        }
    return shape


def test_migrate_creates_the_current_schema_on_an_empty_database(fresh_engine: Engine) -> None:
    assert current_version(fresh_engine) == 0
    assert migrate(fresh_engine) == LATEST_VERSION
    assert current_version(fresh_engine) == LATEST_VERSION
    assert _shape(fresh_engine) == _model_shape()
    assert (ORDERS_UNIQUE, ("store", "order_id")) in _shape(fresh_engine)["orders"]["unique"]


def test_migrate_twice_is_a_no_op(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        versions = conn.execute(select(schema_version.c.version)).scalars().all()
    assert sorted(versions) == [m.version for m in MIGRATIONS]


def _add_note_column(conn: Connection) -> None:
    """A synthetic later release: a new column, backfilled from existing data."""
    conn.execute(text("ALTER TABLE orders ADD COLUMN note TEXT"))
    conn.execute(text("UPDATE orders SET note = 'was ' || order_state"))


def test_database_at_v1_with_data_migrates_to_latest_and_later_without_loss(
    fresh_engine: Engine,
) -> None:
    assert migrate(fresh_engine, migrations=MIGRATIONS[:1]) == 1
    assert ORDERS_SEEN_INDEX not in {i["name"] for i in inspect(fresh_engine).get_indexes("orders")}
    with fresh_engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        ensure_store(conn, "PURNA", "Purna")
        upsert_orders(conn, "NATUR", make_page(181_590, 40))
        upsert_orders(conn, "PURNA", make_page(9_490, 20, step=3, state="Livré"))
    before = {s: orders_after(fresh_engine, s, None, 1000) for s in ("NATUR", "PURNA")}

    assert migrate(fresh_engine) == LATEST_VERSION
    assert ORDERS_SEEN_INDEX in {i["name"] for i in inspect(fresh_engine).get_indexes("orders")}
    assert {s: orders_after(fresh_engine, s, None, 1000) for s in before} == before

    later = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "orders.note", _add_note_column))
    assert migrate(fresh_engine, migrations=later) == LATEST_VERSION + 1
    assert {s: orders_after(fresh_engine, s, None, 1000) for s in before} == before
    with fresh_engine.connect() as conn:
        notes = set(conn.execute(text("SELECT note FROM orders")).scalars())
        recorded = conn.execute(select(schema_version.c.version)).scalars().all()
    assert notes == {"was En cours", "was Livré"}
    assert sorted(recorded) == list(range(1, LATEST_VERSION + 2))


def test_failing_migration_rolls_back_every_step_of_the_run(fresh_engine: Engine) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(StorageError, match=r"migration v2 \(broken\) failed.*unchanged"):
        migrate(fresh_engine, migrations=(MIGRATIONS[0], Migration(2, "broken", broken)))
    assert current_version(fresh_engine) == 0
    assert not {"orders", "half_done"} & set(inspect(fresh_engine).get_table_names())
    assert migrate(fresh_engine) == LATEST_VERSION


def test_database_newer_than_the_code_is_refused(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with pytest.raises(StorageError, match="newer than this ecosync knows"):
        migrate(fresh_engine, migrations=MIGRATIONS[:1])


def test_migrate_rejects_a_list_with_gaps_or_out_of_order(fresh_engine: Engine) -> None:
    with pytest.raises(ValueError, match="1, 2, 3"):
        migrate(fresh_engine, migrations=(MIGRATIONS[1], MIGRATIONS[0]))


def test_two_migrators_at_once_apply_each_migration_once(database_url: str) -> None:
    calls: list[int] = []

    def counted(conn: Connection) -> None:
        calls.append(1)
        # Slow enough that the other migrator arrives while this one holds the lock.
        time.sleep(0.3)

    steps = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "counted", counted))
    engines = [make_engine(database_url) for _ in range(2)]
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(engine: Engine) -> None:
        try:
            barrier.wait()
            results.append(migrate(engine, migrations=steps))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert results == [LATEST_VERSION + 1] * 2
        assert calls == [1]
        with engines[0].connect() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
        assert sorted(versions) == list(range(1, LATEST_VERSION + 2))
    finally:
        for e in engines:
            e.dispose()


def test_tables_created_without_bookkeeping_are_adopted(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        metadata.create_all(conn, tables=[metadata.tables["stores"], metadata.tables["orders"]])
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 5))
    assert migrate(fresh_engine) == LATEST_VERSION
    assert len(orders_after(fresh_engine, "NATUR", None, 100)) == 5


def test_schema_version_records_description_and_time(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        row = conn.execute(select(schema_version).where(schema_version.c.version == 1)).one()
    assert row.description == MIGRATIONS[0].description
    assert row.applied_at.tzinfo is not None
