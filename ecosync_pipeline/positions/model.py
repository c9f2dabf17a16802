"""SyncPosition: where a store's sync stands, as a small typed value."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Literal, get_args

from ecosync_pipeline.config import StoreId

PositionSource = Literal["redis", "json", "database", "calculated"]
"""Where a position came from. ``calculated`` is a first sync with nothing to go on."""

PositionStatus = Literal[
    "healthy", "missing", "reset", "stale", "ahead", "calculated", "unreachable"
]
"""A store's position health, compared with the orders database (the truth);
``unreachable`` when the layer could not be read at all (Redis down)."""
POSITION_STATUSES: tuple[PositionStatus, ...] = get_args(PositionStatus)
"""Every status, in the order reports list their counts."""


def utc_now() -> datetime:
    """Timezone-aware now, the only clock positions use."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SyncPosition:
    """A store's sync position.

    ``last_page`` is the page last read (with ``per_page`` orders a page), ``first_id`` and
    ``last_id`` the ids on that page, ``last_order_id`` the highest order id committed to
    the database, ``last_index`` that order's place on the page (positions/page_size.py
    converts a position between page sizes with it). A position is only ever written
    after the orders it covers are committed, so ``last_order_id`` is never ahead of the
    data.
    """

    store: StoreId
    store_name: str
    last_page: int
    first_id: int | None
    last_id: int | None
    last_order_id: int | None
    updated_at: datetime
    source: PositionSource
    per_page: int = 20
    verified: bool = False
    last_index: int | None = None
    """The last synced order's place on ``last_page`` (1-based); None when unknown."""

    @property
    def target(self) -> int | None:
        """The id the sync must resume after: the last synced order id."""
        if self.last_order_id is not None:
            return self.last_order_id
        return self.last_id

    def with_source(self, source: PositionSource, *, verified: bool | None = None) -> SyncPosition:
        """A copy tagged with another source (and optionally verification)."""
        return replace(
            self, source=source, verified=self.verified if verified is None else verified
        )

    @classmethod
    def first_sync(cls, store: StoreId, store_name: str, per_page: int = 20) -> SyncPosition:
        """The position of a store with no orders yet: page 1, nothing synced."""
        return cls(
            store=store,
            store_name=store_name,
            last_page=1,
            first_id=None,
            last_id=None,
            last_order_id=None,
            updated_at=utc_now(),
            source="calculated",
            per_page=per_page,
            verified=True,
        )
