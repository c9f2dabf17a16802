"""webhook_inbox: every accepted webhook delivery, stored before it is answered

Revision 0006, after 0005. Deliveries repeated by EcoManager's retries (same store,
webhook id, event, order id and body) are stored once; applied ones are marked.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from ecosync_pipeline.storage.schema import NAMING_CONVENTION, UtcDateTime, surrogate_key

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    md = MetaData(naming_convention=NAMING_CONVENTION)
    inbox = Table(
        "webhook_inbox",
        md,
        Column("id", surrogate_key(), primary_key=True, autoincrement=True),
        Column("store", String(32), nullable=False),
        Column("event", String(64), nullable=False, comment="X-Ecomanager-Event"),
        Column("webhook_id", String(64), nullable=False, comment="X-Ecomanager-Webhook-ID"),
        Column("order_id", BigInteger, nullable=False),
        Column("body_sha256", String(64), nullable=False),
        Column("body", LargeBinary, nullable=False, comment="the raw body, as signed"),
        Column("received_at", UtcDateTime, nullable=False),
        Column("applied_at", UtcDateTime, comment="NULL until applied to the orders table"),
        Column("outcome", String(16), comment="applied, stale, invalid or gap"),
        UniqueConstraint("store", "order_id", "event", "webhook_id", "body_sha256"),
        Index(None, "applied_at", "id"),
        Index(None, "store", "received_at"),
    )
    inbox.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("webhook_inbox")
