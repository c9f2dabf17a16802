"""orders.raw_payload: the order as served, when a field of it was set aside

Revision 0005, after 0004. A field the table cannot hold (a NUL character, NaN, an amount
beyond NUMERIC(14, 2), a date that overflows, a lone surrogate) is stored empty, and the
order's JSON, ASCII-escaped so both databases keep it exactly, goes here instead of
blocking the store. NULL for every order stored whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database whose tables were created from the current model has it already.
    if "raw_payload" in {c["name"] for c in inspect(op.get_bind()).get_columns("orders")}:
        return
    op.add_column(
        "orders",
        sa.Column(
            "raw_payload",
            sa.Text,
            nullable=True,
            comment="the order as served (ASCII JSON) when a field was set aside; else NULL",
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("raw_payload")
