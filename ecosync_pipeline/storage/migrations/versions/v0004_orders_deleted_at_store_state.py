"""orders.deleted_at (flagged deleted upstream) and store_state (per-store JSON values)

Revision 0004, after 0003. An order EcoManager no longer serves keeps its row with
``deleted_at`` set and leaves every count; a partial index holds just those rows, so a
live count is the unique index's count minus a few. ``store_state`` keeps what must move
with the data: the reconciliation's cursor, the window the last sync read.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from ecosync_pipeline.storage.schema import UtcDateTime, json_type

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_orders_store_deleted"


def upgrade() -> None:
    # A database whose tables were created from the current model (adopted by 0001) has
    # these already.
    found = inspect(op.get_bind())
    if "deleted_at" not in {c["name"] for c in found.get_columns("orders")}:
        _add_deleted_at()
    if INDEX not in {i["name"] for i in found.get_indexes("orders")}:
        flagged = sa.text("deleted_at IS NOT NULL")
        op.create_index(
            INDEX, "orders", ["store", "order_id"], postgresql_where=flagged, sqlite_where=flagged
        )
    if not found.has_table("store_state"):
        _create_store_state()


def _add_deleted_at() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "deleted_at",
            UtcDateTime,
            nullable=True,
            comment="when ecosync found it deleted upstream; NULL while EcoManager serves it",
        ),
    )


def _create_store_state() -> None:
    op.create_table(
        "store_state",
        sa.Column("store", sa.String(32), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", json_type(), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["store"],
            ["stores.identifier"],
            name="fk_store_state_store_stores",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("store", "name", name="pk_store_state"),
    )


def downgrade() -> None:
    op.drop_table("store_state")
    op.drop_index(INDEX, table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("deleted_at")
