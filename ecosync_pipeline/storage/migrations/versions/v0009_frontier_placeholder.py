"""an empty revision standing in for 0009, the proved frontier (issue 23, item 1)

Revision 0009, after 0008. The frontier's own revision 0009 replaces this file; until it
lands, this keeps the history one line so that 0010 applies.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
