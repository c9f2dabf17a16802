"""make_engine: URL forms, SQLite settings, and connection failures that say what to do."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ecosync_pipeline.errors import ConfigError, DatabaseUnavailable, StorageError
from ecosync_pipeline.storage import (
    ensure_store,
    make_engine,
    migrate,
    normalize_url,
    ping,
    redact,
    store_summaries,
    upsert_orders,
)
from ecosync_pipeline_tests.test_storage.factories import make_page


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/orders",
        "postgresql://u:p@db:5432/orders",
        "postgresql+psycopg://u:p@db:5432/orders",
    ],
)
def test_normalize_url_pins_psycopg3_for_every_postgres_form(url: str) -> None:
    parsed = normalize_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.host, parsed.port, parsed.database, parsed.password) == (
        "db",
        5432,
        "orders",
        "p",
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@h/d",
        "postgresql+psycopg2://u@h/d",
        "sqlite://",
        "sqlite:///:memory:",
        "not a url",
    ],
)
def test_normalize_url_refuses_unsupported_or_memory_databases(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///path/to/ecosync.db"):
        normalize_url(url)


def test_redact_hides_the_password_and_keeps_the_rest() -> None:
    assert redact("postgresql://ecosync:s3cr%40t@db:5432/orders") == (
        "postgresql://ecosync:***@db:5432/orders"
    )
    assert "s3cret" not in redact("weird://user:s3cret@")
    assert redact("sqlite:////data/ecosync.db") == "sqlite:////data/ecosync.db"


def test_unreachable_postgres_raises_database_unavailable_without_the_password() -> None:
    # Port 1 on localhost refuses at once: nothing listens there.
    engine = make_engine("postgresql://ecosync:hunter2@127.0.0.1:1/orders")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            ping(engine)
        message = str(caught.value)
        assert "hunter2" not in message
        assert "postgresql+psycopg://ecosync:***@127.0.0.1:1/orders" in message
        assert "ECOSYNC_DATABASE_URL" in message
        # Any first use converts the same way, not only ping().
        with pytest.raises(DatabaseUnavailable):
            migrate(engine)
    finally:
        engine.dispose()


def test_unopenable_sqlite_file_raises_database_unavailable_with_a_remedy(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}")  # a folder, not a file
    try:
        with pytest.raises(DatabaseUnavailable, match="readable and writable"):
            ping(engine)
    finally:
        engine.dispose()


def test_many_openers_of_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself; concurrent openers must wait.
    errors: list[BaseException] = []
    for n in range(10):
        engines = [make_engine(f"sqlite:///{tmp_path}/db{n}.sqlite") for _ in range(4)]
        barrier = threading.Barrier(len(engines))

        def open_and_migrate(engine: Engine, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                migrate(engine)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=open_and_migrate, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for e in engines:
            e.dispose()
    assert errors == []


def test_sqlite_parent_folder_is_created(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "deeper" / "ecosync.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        ping(engine)
        assert db.exists()
    finally:
        engine.dispose()


def test_sqlite_folder_that_cannot_exist_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot be created"):
        make_engine(f"sqlite:///{blocker}/ecosync.db")


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    finally:
        engine.dispose()


def test_sqlite_reader_is_not_blocked_by_an_open_write_transaction(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            ensure_store(conn, "NATUR", "Natur")
            upsert_orders(conn, "NATUR", make_page(1))
        writer = engine.connect()
        writer.begin()
        upsert_orders(writer, "NATUR", make_page(100))  # holds the write lock, uncommitted
        started = time.monotonic()
        summaries = store_summaries(engine)
        assert time.monotonic() - started < 2
        assert summaries["NATUR"].order_count == 20  # the uncommitted page is invisible
        writer.rollback()
        writer.close()
    finally:
        engine.dispose()


def test_concurrent_writers_of_different_stores_all_commit(database_url: str) -> None:
    engine = make_engine(database_url)
    stores = ["NATUR", "PURNA", "DILST", "MGSTR"]
    errors: list[BaseException] = []
    try:
        migrate(engine)
        barrier = threading.Barrier(len(stores))

        def sync(store: str) -> None:
            try:
                with engine.begin() as conn:
                    ensure_store(conn, store, store.title())
                barrier.wait()
                for page in range(10):
                    # Each transaction reads (which ids exist) and then writes.
                    with engine.begin() as conn:
                        upsert_orders(conn, store, make_page(1 + page * 20))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=sync, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        summaries = store_summaries(engine)
        assert {s: (x.order_count, x.last_order_id) for s, x in summaries.items()} == {
            s: (200, 200) for s in stores
        }
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 800
    finally:
        engine.dispose()
