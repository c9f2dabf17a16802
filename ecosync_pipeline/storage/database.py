"""Opening the orders database: one engine factory for PostgreSQL and embedded SQLite.

PostgreSQL (psycopg 3) is the production backend; a SQLite file is the embedded default.
The rest of ``storage`` runs the same SQLAlchemy Core code on both, so everything that
differs between them at connection level lives here.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from ecosync_pipeline.errors import ConfigError, DatabaseUnavailable, StorageError
from ecosync_pipeline.storage.dialect import READ_ONLY_OPTION

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite connection waits for another writer before failing (one page
commits in milliseconds, so only a stuck process makes anyone wait this long)."""

POSTGRES_CONNECT_TIMEOUT_S = 10

_POSTGRES_DRIVERS = {"postgresql", "postgresql+psycopg", "postgres"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, safe for logs and messages."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: still never echo what looks like a password.
        return _PASSWORD_IN_URL.sub(r"\1***@", url)


def normalize_url(url: str) -> URL:
    """Parse a database URL and pin the driver: psycopg 3 for PostgreSQL, pysqlite for SQLite.

    Accepts ``postgres://``, ``postgresql://``, ``postgresql+psycopg://`` and
    ``sqlite:///path``; anything else raises ConfigError.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"database URL {redact(url)} cannot be parsed ({exc}); use "
            "postgresql://user:password@host:5432/dbname or sqlite:///path/to/ecosync.db"
        ) from exc
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in _SQLITE_DRIVERS:
        if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
            raise ConfigError(
                f"database URL {redact(parsed)} is not a SQLite file: an in-memory database "
                "is not shared between connections or processes; use sqlite:///path/to/ecosync.db"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigError(
        f"database URL {redact(parsed)} uses {parsed.drivername!r}, which ecosync does not "
        "support; use postgresql://... (psycopg 3) or sqlite:///path/to/ecosync.db"
    )


def make_engine(url: str) -> Engine:
    """An Engine for the orders database at ``url`` (see normalize_url for the forms).

    Nothing connects yet. A first connection that fails raises DatabaseUnavailable naming
    the URL without its password. SQL parameters (customer data) are kept out of error
    messages and logs.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed)
    return _sqlite_engine(parsed)


def ping(engine: Engine) -> None:
    """Connect once and run ``SELECT 1``; raise DatabaseUnavailable if that fails."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        raise _unavailable(engine.url, exc) from exc


def _postgres_engine(url: URL) -> Engine:
    engine = create_engine(
        url,
        # A pooled connection may have been closed by the server or a proxy while idle.
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "application_name": "ecosync",
        },
    )
    _convert_connect_errors(engine)
    return engine


def _sqlite_engine(url: URL) -> Engine:
    assert url.database is not None
    path = Path(url.database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"orders database {redact(url)}: folder {path.parent} cannot be created "
            f"({exc.strerror}); create it or point ECOSYNC_DATABASE_URL elsewhere"
        ) from exc
    engine = create_engine(
        url.set(database=str(path)),
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    _convert_connect_errors(engine)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (the module
    # would otherwise delay BEGIN to the first write and commit before DDL).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers do not block the writer nor the writer the readers.
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            _switch_to_wal(cursor)
        # FULL keeps a commit durable across power loss: a position is written after the
        # orders commit, and must never survive while the orders it covers do not.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Put a new database file in WAL mode (it stays so), waiting out a concurrent opener.

    The switch needs the file to itself and SQLite does not apply busy_timeout to it, so
    two processes opening a new database at once would see "database is locked".
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    if options.get(READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        # A deferred transaction that reads, then writes, fails at once with SQLITE_BUSY
        # if another process committed in between; taking the write lock at BEGIN makes
        # it wait (busy_timeout) instead. Writers are serialized either way.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _convert_connect_errors(engine: Engine) -> None:
    url = engine.url

    def handle_error(context: ExceptionContext) -> None:
        # Only a failure to open a connection: errors on a live connection are converted
        # by the storage function that ran the statement, which knows the store.
        if context.connection is None and not context.is_pre_ping:
            raise _unavailable(url, context.sqlalchemy_exception or context.original_exception)

    event.listen(engine, "handle_error", handle_error)


def _unavailable(url: URL, exc: BaseException | None) -> DatabaseUnavailable:
    if url.get_backend_name() == "sqlite":
        remedy = (
            "check that the file and its folder are readable and writable by this user, "
            "or point ECOSYNC_DATABASE_URL at another file"
        )
    else:
        remedy = (
            "check that the database server is running and reachable, and that "
            "ECOSYNC_DATABASE_URL names it with the right user and password"
        )
    return DatabaseUnavailable(
        f"cannot connect to the orders database at {redact(url)} ({describe_error(exc)}); {remedy}"
    )


def describe_error(exc: BaseException | None) -> str:
    """The first line of the driver's message for a database error, without SQL or parameters."""
    if exc is None:
        return "unknown error"
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
