"""index orders (store, last_seen_at) for reconciliation

Revision 0002, after 0001: finds a store's orders not seen since a date.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import inspect

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_orders_store_last_seen_at"


def upgrade() -> None:
    existing = {i["name"] for i in inspect(op.get_bind()).get_indexes("orders")}
    if INDEX not in existing:
        op.create_index(INDEX, "orders", ["store", "last_seen_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="orders")
