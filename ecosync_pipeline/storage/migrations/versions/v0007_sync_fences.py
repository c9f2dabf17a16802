"""sync_fences: the fencing token of each store's sync lock

Revision 0007, after 0006. Every run that takes a store's lock raises the store's token
and checks, in the transaction of each page it writes, that the token is still its own:
a run whose lock was lost (its connection dropped, another run took the store) finds out
there and stops, and never writes between the pages of the run that holds the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from ecosync_pipeline.storage.schema import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if inspect(op.get_bind()).has_table("sync_fences"):
        return
    op.create_table(
        "sync_fences",
        sa.Column("store", sa.String(32), nullable=False),
        sa.Column(
            "token",
            sa.BigInteger,
            nullable=False,
            comment="raised by every run that takes the lock",
        ),
        sa.Column("taken_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("store", name="pk_sync_fences"),
    )


def downgrade() -> None:
    op.drop_table("sync_fences")
