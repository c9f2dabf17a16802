"""initial schema: stores, orders unique on (store, order_id)

Revision 0001, the first release's schema. Frozen: a later change is a new revision.
Tables that already exist (created without bookkeeping) are adopted as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ecosync_pipeline.storage.schema import (
    NAMING_CONVENTION,
    Money,
    UtcDateTime,
    json_type,
    surrogate_key,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tables() -> tuple[Table, Table]:
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


def upgrade() -> None:
    stores, orders = _tables()
    stores.create(op.get_bind(), checkfirst=True)
    orders.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    op.drop_table("orders")
    op.drop_table("stores")
