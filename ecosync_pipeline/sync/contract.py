"""The server checked, never followed blindly: where a store ends, and pages that disagree.

The contract says little for certain: a page past the end is empty, ids ascend. A page
with fewer orders than asked is therefore not, by itself, the end: the end is an empty
page, or ``meta.last_page`` confirmed by a short page at that number. A short page in
the middle is a server that serves smaller pages (``meta.per_page``, or the count it
served) or one that dropped an order once; either way the sync reads on at the size the
server really serves, so no order is skipped. A page that repeats the last one, or ids
that go back across pages, is a ``ContractViolation`` raised before the page is
written, so the position never moves past the last good page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import ContractViolation

logger = logging.getLogger(__name__)

MAX_OVERLAPPING_PAGES = 32
"""Pages after a resize or relocation that may hold only orders already read; a server
still repeating itself after that many is refused rather than followed."""


@dataclass(frozen=True)
class Settled:
    """What a page means once checked: the page to write, the size to read on at, the end."""

    page: Page
    per_page: int
    end: bool


def settle(page: Page, client: PageFetcher, asked: int, *, reread: bool = True) -> Settled:
    """Decide whether ``page`` (fetched with ``asked`` a page) ends the store, and at what
    size to read on; a short page costs at most two more requests to tell."""
    if page.is_empty:
        return Settled(page, asked, end=True)
    served = page.count_served
    if served >= asked:
        return Settled(page, asked, end=False)
    claims_end = page.last_page is not None and page.number >= page.last_page
    cap = page.meta_per_page
    if cap is not None and served <= cap < asked:
        logger.warning(
            "store %s: page %d: the server serves %d orders a page, not %d; reading on at %d",
            page.store,
            page.number,
            cap,
            asked,
            cap,
        )
        return Settled(replace(page, per_page=cap), cap, end=claims_end and served < cap)
    if claims_end:
        return Settled(page, asked, end=True)
    if page.last_page is None and client.fetch_page(page.number + 1, asked).is_empty:
        return Settled(page, asked, end=True)
    if reread:
        again = client.fetch_page(page.number, asked)
        if again.count_served > served:
            logger.warning(
                "store %s: page %d: served %d of %d orders, then %d when read again",
                page.store,
                page.number,
                served,
                asked,
                again.count_served,
            )
            return settle(again, client, asked, reread=False)
    logger.warning(
        "store %s: page %d: served %d of %d orders though more pages follow; reading on at "
        "%d a page so that no order is skipped",
        page.store,
        page.number,
        served,
        asked,
        served,
    )
    return Settled(replace(page, per_page=served), served, end=False)


class PageGuard:
    """Refuses a page that contradicts the one before it (same size, ids must go on up).

    After the page size changes or the sync relocates, the next pages may overlap what
    was read (re-reads the upsert absorbs) until one reaches past it.
    """

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._last: Page | None = None
        self._overlap_left = MAX_OVERLAPPING_PAGES

    def allow_overlap(self) -> None:
        """The next pages may repeat orders already read (size changed, relocated)."""
        self._overlap_left = MAX_OVERLAPPING_PAGES

    def check(self, page: Page) -> None:
        """Raise ContractViolation if ``page`` repeats or goes back on the last page."""
        last = self._last
        if page.is_empty or last is None or last.last_id is None:
            self._accept(page)
            return
        assert page.first_id is not None and page.last_id is not None
        if self._overlap_left > 0 and page.last_id <= last.last_id:
            self._overlap_left -= 1
            return
        if self._overlap_left > 0 or page.first_id > last.last_id:
            self._accept(page)
            return
        what = (
            f"page {page.number} repeats page {last.number} (the same order ids "
            f"{page.first_id}..{page.last_id}): the server seems to ignore the page parameter"
            if page.ids == last.ids
            else f"order ids go back across pages: page {last.number} ended at id "
            f"{last.last_id}, page {page.number} starts at id {page.first_id}"
        )
        raise ContractViolation(
            f"store {page.store}: page {page.number}: {what}. The position stays at page "
            f"{last.number}, the last good page; fix {self._base_url} (or ask EcoManager), "
            "then rerun",
            store=page.store,
            page=page.number,
        )

    def _accept(self, page: Page) -> None:
        if not page.is_empty:
            self._last = page
            self._overlap_left = 0
