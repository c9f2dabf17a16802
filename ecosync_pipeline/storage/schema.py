"""The orders database schema, as SQLAlchemy Core tables: the current version.

The Alembic revisions in ``migrations/versions`` bring any database to this shape; a
test checks that a database upgraded from scratch matches these definitions exactly.
The writes and reads of ``orders.py`` derive their column lists from these tables: a
column of ``orders`` whose ``info`` names an ``Order`` field (``from_order``) is
written by the page upsert and refreshed when a page is read again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Stable constraint and index names, so migrations can refer to them on both backends."""

STORE_ID_LENGTH = 32
MONEY_MAX = Decimal("999999999999.99")
_CENT = Decimal("0.01")


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
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

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
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(20))
        return dialect.type_descriptor(Numeric(14, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP)
        if abs(amount) > MONEY_MAX:
            raise ValueError(f"amount {amount} exceeds NUMERIC(14, 2)")
        return str(amount) if dialect.name == "sqlite" else amount

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


ORDER_FIELD = "order_field"


def from_order(field: str) -> dict[str, str]:
    """Column ``info`` naming the ``Order`` attribute the page upsert writes into the column."""
    return {ORDER_FIELD: field}


metadata = MetaData(naming_convention=NAMING_CONVENTION)

stores = Table(
    "stores",
    metadata,
    Column("identifier", String(STORE_ID_LENGTH), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""One row per store that has ever been synced."""

orders = Table(
    "orders",
    metadata,
    Column("id", surrogate_key(), primary_key=True, autoincrement=True),
    Column(
        "store",
        String(STORE_ID_LENGTH),
        ForeignKey("stores.identifier", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column(
        "order_id",
        BigInteger,
        nullable=False,
        comment="EcoManager's order id",
        info=from_order("id"),
    ),
    Column("reference", Text, info=from_order("reference")),
    Column("order_state", Text, info=from_order("order_state_name")),
    Column("confirmation_state", Text, info=from_order("confirmation_state_name")),
    Column("full_name", Text, info=from_order("full_name")),
    Column("telephone", Text, info=from_order("telephone")),
    Column("wilaya", Text, info=from_order("wilaya")),
    Column("commune", Text, info=from_order("commune")),
    Column("items", json_type(), nullable=False, info=from_order("items")),
    Column("total_products", Money, info=from_order("total_products")),
    Column("total", Money, info=from_order("total")),
    Column("created_at", UtcDateTime, comment="EcoManager's", info=from_order("created_at")),
    Column("updated_at", UtcDateTime, comment="EcoManager's", info=from_order("updated_at")),
    Column("first_seen_at", UtcDateTime, nullable=False, comment="when ecosync first read it"),
    Column("last_seen_at", UtcDateTime, nullable=False, comment="when ecosync last read it"),
    Column(
        "deleted_at",
        UtcDateTime,
        nullable=True,
        comment="when ecosync found it deleted upstream; NULL while EcoManager serves it",
    ),
    # Revision 0010: when ecosync recorded the deletion (the delivery's arrival, or the read
    # that found the order gone). A state fetched before it never revives the order.
    Column(
        "deletion_recorded_at",
        UtcDateTime,
        nullable=True,
        comment="when ecosync recorded the deletion; a state fetched before never revives it",
    ),
    # Revision 0005: a field the table could not hold is stored empty; the order as served
    # is kept here (ASCII JSON), so nothing is lost and nothing blocks the store.
    Column(
        "raw_payload",
        Text,
        nullable=True,
        comment="the order as served (ASCII JSON) when a field was set aside; else NULL",
        info=from_order("raw"),
    ),
    # The unique index on (store, order_id) makes re-reading a page harmless (upsert) and
    # answers "last order id and count per store" from the index alone.
    UniqueConstraint("store", "order_id"),
    # Revision 0002: orders of a store not seen since a date (deleted upstream, for reconciliation).
    Index(None, "store", "last_seen_at"),
    # v3: the few flagged orders, so live counts are the unique index's count minus these.
    Index(
        "ix_orders_store_deleted",
        "store",
        "order_id",
        postgresql_where=text("deleted_at IS NOT NULL"),
        sqlite_where=text("deleted_at IS NOT NULL"),
    ),
    # Revision 0008: orders first seen in a time range (polled while webhooks were silent).
    Index(None, "store", "first_seen_at"),
)
"""Every order ever read, once per (store, order_id)."""

store_state = Table(
    "store_state",
    metadata,
    Column(
        "store",
        String(STORE_ID_LENGTH),
        ForeignKey("stores.identifier", ondelete="RESTRICT"),
        primary_key=True,
    ),
    Column("name", String(32), primary_key=True),
    Column("value", json_type(), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""Small JSON values per store kept with the data (the reconciliation's cursor, ...)."""

ORDERS_UNIQUE = "uq_orders_store_order_id"
ORDERS_SEEN_INDEX = "ix_orders_store_last_seen_at"
ORDERS_DELETED_INDEX = "ix_orders_store_deleted"

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("id", surrogate_key(), primary_key=True, autoincrement=True),
    Column("store", String(STORE_ID_LENGTH), nullable=False),
    Column("event", String(64), nullable=False, comment="X-Ecomanager-Event"),
    Column("webhook_id", String(64), nullable=False, comment="X-Ecomanager-Webhook-ID"),
    Column("order_id", BigInteger, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False, comment="the raw body, as signed"),
    Column("received_at", UtcDateTime, nullable=False),
    Column("applied_at", UtcDateTime, comment="NULL until applied to the orders table"),
    Column("outcome", String(16), comment="applied, stale, tie, gap or refused"),
    # Revision 0010: why an authentic delivery could not be applied (kept, answered 200).
    Column("reason", Text, comment="why the delivery was refused; NULL when applied"),
    # EcoManager's retries repeat a delivery exactly: stored once.
    UniqueConstraint("store", "order_id", "event", "webhook_id", "body_sha256"),
    Index(None, "applied_at", "id"),
    Index(None, "store", "received_at"),
)
"""Every accepted webhook delivery, stored before it is answered (DESIGN, invariant 13)."""

sync_fences = Table(
    "sync_fences",
    metadata,
    Column("store", String(STORE_ID_LENGTH), primary_key=True),
    Column("token", BigInteger, nullable=False, comment="raised by every run that takes the lock"),
    Column("taken_at", UtcDateTime, nullable=False),
    # Revision 0010: who holds the store, so a second run can name it.
    Column("holder", String(200), comment="the run holding the lock: process, host, since"),
)
"""Revision 0007: the store lock's fencing token. A run that takes a store's lock raises
the token; its page writes go through only while the token is still its own, so a run
that lost the lock can never write behind the run that took it."""
