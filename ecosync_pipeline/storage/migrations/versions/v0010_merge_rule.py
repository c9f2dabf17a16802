"""the merge rule's columns: when a deletion was recorded, why a delivery was refused, who
holds a store

Revision 0010, after 0009. ``orders.deletion_recorded_at``: a state fetched before the
deletion was recorded never revives the order (DESIGN, invariant 15); orders flagged
before this revision count as recorded now, so no read already in flight revives them.
``webhook_inbox.reason``: an authentic delivery that cannot be applied is kept with its
reason and answered 200 (invariant 13). ``sync_fences.holder``: the run that holds a
store, named by the run refused beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from ecosync_pipeline.storage.schema import UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    (
        "orders",
        sa.Column(
            "deletion_recorded_at",
            UtcDateTime,
            nullable=True,
            comment="when ecosync recorded the deletion; a state fetched before never revives it",
        ),
    ),
    (
        "webhook_inbox",
        sa.Column("reason", sa.Text, comment="why the delivery was refused; NULL when applied"),
    ),
    (
        "sync_fences",
        sa.Column(
            "holder",
            sa.String(200),
            comment="the run holding the lock: process, host, since",
        ),
    ),
)


def upgrade() -> None:
    inspector = inspect(op.get_bind())
    for table, column in COLUMNS:
        # A database whose tables were created from the current model has them already.
        if column.name not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, column)
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps no comments
        op.alter_column(
            "webhook_inbox",
            "outcome",
            existing_type=sa.String(16),
            existing_nullable=True,
            comment="applied, stale, tie, gap or refused",
            existing_comment="applied, stale, invalid or gap",
        )
    orders = sa.table(
        "orders", sa.column("deleted_at"), sa.column("deletion_recorded_at", UtcDateTime)
    )
    op.execute(
        orders.update()
        .where(orders.c.deleted_at.is_not(None), orders.c.deletion_recorded_at.is_(None))
        .values(deletion_recorded_at=datetime.now(timezone.utc))
    )


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
