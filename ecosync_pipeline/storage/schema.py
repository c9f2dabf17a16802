"""The orders database schema, as SQLAlchemy Core tables: the current version.

The Alembic revisions in ``migrations/versions`` bring any database to this shape; a
test checks that a database upgraded from scratch matches these definitions exactly.
The writes and reads of ``orders.py`` derive their column lists from these tables: a
column of ``orders`` whose ``info`` names an ``Order`` field (``from_order``) is
written by the page upsert and refreshed when a page is read again.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# The column types that differ by backend; the revisions import them from here.
from ecosync_pipeline.storage.dialect import Money as Money
from ecosync_pipeline.storage.dialect import UtcDateTime as UtcDateTime
from ecosync_pipeline.storage.dialect import json_type as json_type
from ecosync_pipeline.storage.dialect import surrogate_key as surrogate_key

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Stable constraint and index names, so migrations can refer to them on both backends."""

STORE_ID_LENGTH = 32

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
