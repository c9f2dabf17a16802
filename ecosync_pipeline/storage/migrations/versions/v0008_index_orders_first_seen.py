"""index orders (store, first_seen_at) for the webhook deliveries check

Revision 0008, after 0007: the orders polling found in a time range (while a store's
webhooks were silent), found by range instead of reading the store's whole history.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import inspect

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_orders_store_first_seen_at"


def upgrade() -> None:
    # An orders table created from the current schema (adopted) has the index already.
    existing = {i["name"] for i in inspect(op.get_bind()).get_indexes("orders")}
    if INDEX not in existing:
        op.create_index(INDEX, "orders", ["store", "first_seen_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="orders")
