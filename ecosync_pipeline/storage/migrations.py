"""Schema migrations: every database, new or years old, is brought to the current schema.

Migrations are an ordered list, from the first release on. Each one's DDL is frozen
here (it does not read ``schema.py``), so what v1 creates never changes when the
current schema does. ``schema_version`` records which have been applied; ``migrate``
applies the pending ones in one transaction, under a lock, so two processes starting
at once (the Dagster daemon and the webserver, say) cannot apply one twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage.database import READ_ONLY, describe_error, redact
from ecosync_pipeline.storage.locks import advisory_key
from ecosync_pipeline.storage.schema import (
    NAMING_CONVENTION,
    Money,
    UtcDateTime,
    json_type,
    schema_version,
    surrogate_key,
)

logger = logging.getLogger(__name__)

MIGRATION_LOCK = "ecosync:migrate"


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history: applied once, in order, never edited afterwards."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_tables() -> tuple[Table, Table]:
    """The stores and orders tables as the first release created them."""
    md = MetaData(naming_convention=NAMING_CONVENTION)
    stores = Table(
        "stores",
        md,
        Column("identifier", String(32), primary_key=True),
        Column("name", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    orders = Table(
        "orders",
        md,
        Column("id", surrogate_key(), primary_key=True, autoincrement=True),
        Column(
            "store",
            String(32),
            ForeignKey("stores.identifier", ondelete="RESTRICT"),
            nullable=False,
        ),
        Column("order_id", BigInteger, nullable=False, comment="EcoManager's order id"),
        Column("reference", Text),
        Column("order_state", Text),
        Column("confirmation_state", Text),
        Column("full_name", Text),
        Column("telephone", Text),
        Column("wilaya", Text),
        Column("commune", Text),
        Column("items", json_type(), nullable=False),
        Column("total_products", Money),
        Column("total", Money),
        Column("created_at", UtcDateTime, comment="EcoManager's"),
        Column("updated_at", UtcDateTime, comment="EcoManager's"),
        Column("first_seen_at", UtcDateTime, nullable=False, comment="when ecosync first read it"),
        Column("last_seen_at", UtcDateTime, nullable=False, comment="when ecosync last read it"),
        UniqueConstraint("store", "order_id"),
    )
    return stores, orders


def _v1_initial_schema(conn: Connection) -> None:
    stores, orders = _v1_tables()
    # checkfirst: a database whose tables were created without bookkeeping is adopted.
    stores.create(conn, checkfirst=True)
    orders.create(conn, checkfirst=True)


def _v2_index_last_seen(conn: Connection) -> None:
    _, orders = _v1_tables()
    index = Index("ix_orders_store_last_seen_at", orders.c.store, orders.c.last_seen_at)
    index.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: stores, orders unique on (store, order_id)", _v1_initial_schema),
    Migration(2, "index orders (store, last_seen_at) for reconciliation", _v2_index_last_seen),
)
"""Every migration, oldest first. Append; never edit or reorder a released one."""

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(bind: Engine | Connection) -> int:
    """The highest applied migration, or 0 for an empty database."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return current_version(conn.execution_options(**READ_ONLY))
    try:
        if not inspect(bind).has_table(schema_version.name):
            return 0
        return int(bind.execute(select(func.max(schema_version.c.version))).scalar() or 0)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"orders database {redact(bind.engine.url)}: reading the schema version failed "
            f"({describe_error(exc)}); check the database"
        ) from exc


def migrate(engine: Engine, *, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the pending migrations in one transaction; return the schema version.

    Idempotent, and safe when several processes call it at once: on PostgreSQL a
    transaction-scoped advisory lock serializes them, on SQLite the write lock taken at
    BEGIN does. Raises StorageError if the database is newer than this code, or if a
    migration fails (the transaction is rolled back, the database is unchanged).
    """
    _check_sequence(migrations)
    latest = migrations[-1].version if migrations else 0
    where = redact(engine.url)
    applying: Migration | None = None
    pending: list[Migration] = []
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(advisory_key(MIGRATION_LOCK))))
            schema_version.create(conn, checkfirst=True)
            current = int(conn.execute(select(func.max(schema_version.c.version))).scalar() or 0)
            if current > latest:
                raise StorageError(
                    f"orders database {where} is at schema version {current}, newer than this "
                    f"ecosync knows ({latest}); upgrade ecosync on this machine before using it"
                )
            pending = [m for m in migrations if m.version > current]
            for migration in pending:
                applying = migration
                logger.info(
                    "orders database %s: applying migration v%d (%s)",
                    where,
                    migration.version,
                    migration.description,
                )
                migration.apply(conn)
                conn.execute(
                    schema_version.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(timezone.utc),
                    )
                )
            applying = None
    except SQLAlchemyError as exc:
        step = (
            f"migration v{applying.version} ({applying.description})"
            if applying
            else ("reading the schema version")
        )
        raise StorageError(
            f"orders database {where}: {step} failed ({describe_error(exc)}); it was rolled "
            "back, so the database is unchanged. Fix the cause and start again"
        ) from exc
    if pending:
        logger.info("orders database %s: schema at version %d", where, latest)
    return latest


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order, got {versions}")
