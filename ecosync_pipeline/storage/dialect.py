"""Where PostgreSQL and SQLite differ, in one place: every other module asks these functions.

    backend(bind)                  "postgresql" or "sqlite"; StorageError for anything else
    is_postgresql(bind)            the production backend (the lab's bulk COPY, the upsert)
    insert(bind)                   the backend's INSERT, the one with ON CONFLICT
    for_update(stmt, bind)         row locks on PostgreSQL; SQLite's write lock is the
                                   transaction's (BEGIN IMMEDIATE, see database.py)
    serialize(conn, name)          one writer at a time under ``name`` for the transaction
    read_only(conn)                a connection that only reads, on each backend's terms
    sqlite_file(engine)            the database file of a SQLite engine
    UtcDateTime, Money             column types stored differently on each backend
    json_type, surrogate_key       column types with a variant per backend

The engine itself (pools, timeouts, SQLite's pragmas) is opened in database.py.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Integer, Numeric, String, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator, TypeEngine

from ecosync_pipeline.errors import StorageError

Backend = Literal["postgresql", "sqlite"]
Bind = Engine | Connection | Dialect
S = TypeVar("S", bound=Select[Any])

READ_ONLY_OPTION = "ecosync_read_only"
READ_ONLY = {READ_ONLY_OPTION: True}
"""Execution options for a connection that only reads: on SQLite it starts a deferred
transaction instead of an immediate one, so readers never wait for a writer."""

MONEY_MAX = Decimal("999999999999.99")
_CENT = Decimal("0.01")


def _name(bind: Bind) -> str:
    return bind.name if isinstance(bind, Dialect) else bind.dialect.name


def _is_sqlite(bind: Bind) -> bool:
    """For the column types, which any dialect may compile (Alembic's, say)."""
    return _name(bind) == "sqlite"


def backend(bind: Bind) -> Backend:
    """The backend behind ``bind``; StorageError naming it when it is neither of ours."""
    name = _name(bind)
    if name == "postgresql":
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise StorageError(f"the {name} backend is not supported; use PostgreSQL or SQLite")


def is_postgresql(bind: Bind) -> bool:
    """The production backend (anything else here is SQLite)."""
    return backend(bind) == "postgresql"


def insert(bind: Bind) -> Any:
    """The backend's ``insert`` construct, the one with ``on_conflict_do_update``."""
    return postgresql.insert if is_postgresql(bind) else sqlite.insert


def for_update(stmt: S, bind: Bind, *, skip_locked: bool = False) -> S:
    """``stmt`` locking the rows it reads until the transaction ends (PostgreSQL).

    SQLite has no row locks: a writing transaction holds the database's write lock from
    its BEGIN IMMEDIATE, so the rows it reads cannot change under it anyway.
    """
    return stmt.with_for_update(skip_locked=skip_locked) if is_postgresql(bind) else stmt


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from ``name``.

    Python's hash() changes between processes; a digest does not, so every process
    (and every release) computes the same key for the same name.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def serialize(conn: Connection, name: str) -> None:
    """Make the transaction of ``conn`` the only one working under ``name`` until it ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to take, as the
    write lock of BEGIN IMMEDIATE already admits one writing transaction at a time.
    """
    if is_postgresql(conn):
        conn.execute(select(func.pg_advisory_xact_lock(advisory_key(name))))


def read_only(conn: Connection) -> Connection:
    """``conn`` for reads only: autocommitted statements on PostgreSQL (each sees what was
    committed before it, and no transaction stays open between them), a deferred
    transaction on SQLite (readers never wait for a writer)."""
    if is_postgresql(conn):
        return conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn.execution_options(**READ_ONLY)


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine, or None (in memory, or another backend)."""
    if not _is_sqlite(engine) or not engine.url.database:
        return None
    return Path(engine.url.database)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC; read back aware (UTC) on every backend.

    SQLite has no time zones, so values are normalised to UTC before they are stored. A
    naive datetime is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        # SQLite stores text: drop the offset so every stored value sorts as text.
        return value.replace(tzinfo=None) if _is_sqlite(dialect) else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(TypeDecorator[Decimal]):
    """An exact amount with two decimals: NUMERIC(14, 2) on PostgreSQL, text on SQLite.

    SQLite's NUMERIC is a float underneath; text keeps every cent exact.
    """

    impl = Numeric(14, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if _is_sqlite(dialect):
            return dialect.type_descriptor(String(20))
        return dialect.type_descriptor(Numeric(14, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP)
        if abs(amount) > MONEY_MAX:
            raise ValueError(f"amount {amount} exceeds NUMERIC(14, 2)")
        return str(amount) if _is_sqlite(dialect) else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).quantize(_CENT)


def json_type() -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL (compact and indexable)."""
    return JSON().with_variant(JSONB(), "postgresql")


def surrogate_key() -> TypeEngine[int]:
    """BIGINT on PostgreSQL; INTEGER on SQLite, where only that aliases the rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")
