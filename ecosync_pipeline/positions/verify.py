"""Verifying a position against the API before a sync may trust it (DESIGN, invariant 4).

The position's page (converted to the page size in use) is fetched first: when it still
holds the last synced order id, or is the store's last page, that single fetch is the
whole check. Otherwise the locator searches from there (gallop, then bisect) for the
resume page, so a page shifted by deletions, a per_page change or a rough database
estimate all end on the same, exact page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.locator import locate_resume_page
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.page_size import page_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verified:
    """A verified position, its page as fetched (for the sync to reuse) and the cost."""

    position: SyncPosition
    page: Page
    fetches: int
    moved: bool
    """The resume page differs from the position's own page (converted to ``per_page``)."""


def verify(position: SyncPosition, fetcher: PageFetcher, per_page: int | None = None) -> Verified:
    """Check ``position`` on the API and return the resume page it really stands on.

    ``per_page`` is the page size the sync will use (default: the position's own); a
    position taken with another page size is converted first (page_size.page_for).
    Raises whatever the fetcher raises (ApiError for the client).
    """
    size = per_page or position.per_page
    hint = page_for(position, size)
    located = locate_resume_page(
        fetcher, position.target, hint, size, resized=lambda served: page_for(position, served)
    )
    page = located.page_data
    target = position.target
    on_page = sum(1 for order_id in page.ids if order_id <= target) if target is not None else 0
    verified = replace(
        position,
        last_page=located.page,
        # Nothing synced yet: the page's ids are not ours, and would read as a target.
        first_id=page.first_id if position.target is not None else None,
        last_id=page.last_id if position.target is not None else None,
        last_order_id=target,
        per_page=size,
        last_index=on_page or None,
        verified=True,
        updated_at=utc_now(),
    )
    moved = located.page != hint
    if moved:
        logger.info(
            "store %s: position from %s said page %d (per_page %d) but the resume page for "
            "order id %s is %d (per_page %d), found in %d fetches",
            position.store,
            position.source,
            position.last_page,
            position.per_page,
            position.target,
            located.page,
            size,
            located.fetches,
        )
    return Verified(position=verified, page=page, fetches=located.fetches, moved=moved)
