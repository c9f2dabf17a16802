"""Reading a store newest page first, in segments of ids that nothing can slip between.

Pages are in ascending id order and a deletion moves every later order one slot towards
page 1. Read page P, then P-1, then P-2: a deletion between two reads moves orders onto
pages not read yet, never onto pages already read, and new orders only ever land after
the last page. So each page read going down covers every id from its own first id up to
the first id of the page read before it: consecutive segments meet or overlap, and an id
absent from a segment is not served, whatever happened during the read. Reading upwards
has no such property (an order moving back a page is skipped unseen), which is why a
page-mode sync can skip and this reader cannot.

Each segment is ``(low, high]``-closed: ``low`` is the page's first id (0 on page 1, so
everything below the first served id is covered too) and ``high`` the id just below
the previous segment. Only a page holding a higher id than every later-read one may be
short: a short page below it breaks the contract and is refused.

A server may serve fewer than the 100 asked a page (the sync follows such a server at
its size too). The top page, short, is the store's end only when ``meta`` says so or
the page after it is empty; otherwise the read is located again at the size the server
serves, before anything is compared: taking a capped page for the end would flag every
order above it deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from ecosync_pipeline.config import MAX_PER_PAGE, StoreId
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.locator import locate_resume_page, served_size
from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.errors import MirrorRefused

logger = logging.getLogger(__name__)

PER_PAGE = MAX_PER_PAGE
"""The mirror reads 100 orders a page: the fewest calls the contract allows."""


@dataclass(frozen=True)
class Segment:
    """The served orders with ``low <= id <= high``, as read from page ``page``."""

    store: StoreId
    page: int
    low: int
    high: int
    orders: tuple[Order, ...]
    fetched_at: datetime | None = None
    """When the page was asked for: an id absent from the segment was gone by then."""

    @property
    def ids(self) -> list[int]:
        return [o.id for o in self.orders]


def _segment(store: StoreId, page: Page, high: int) -> Segment:
    if page.number == 1 and page.is_empty:
        # Every stored order would be flagged on the word of one empty answer: far more
        # likely a wrong base_url or a broken server than a store emptied upstream.
        raise MirrorRefused(
            f"store {store}: page 1 is empty, so EcoManager serves no orders at all for this "
            "store; nothing was flagged deleted. Check the store's base_url and token; if "
            "the store really was emptied upstream, flag its orders by hand",
            store=store,
            page=1,
        )
    low = 0 if page.number == 1 else page.first_id
    if low is None:
        raise MirrorRefused(
            f"store {store}: page {page.number} is empty although later pages hold orders; "
            "the server breaks the contract (pages shift only towards page 1), so nothing "
            "was compared or flagged. Check the store's base_url, then run it again",
            store=store,
            page=page.number,
        )
    orders = tuple(o for o in page.orders if low <= o.id <= high)
    fetched = page.orders[0].fetched_at if page.orders else None
    return Segment(store, page.number, low, high, orders, fetched)


def _check_full(store: StoreId, page: Page, per_page: int) -> None:
    if len(page.orders) < per_page:
        raise MirrorRefused(
            f"store {store}: page {page.number} holds {len(page.orders)} orders, fewer than "
            f"the {per_page} asked, although later pages hold orders; the server breaks the "
            "contract, so nothing below it was compared or flagged",
            store=store,
            page=page.number,
        )


def descend(
    fetcher: PageFetcher,
    store: StoreId,
    *,
    target: int,
    high: int,
    hint: int,
    floor: int | None = None,
    calls_left: Callable[[], bool] | None = None,
) -> Iterator[Segment]:
    """Segments from the page holding ``target`` down to ``floor`` (or page 1).

    ``target`` is located first (gallop and bisect from ``hint``, one fetch when the hint
    is right); ``high`` caps the first segment (the previous run's ``low - 1`` when a
    sweep continues, so its boundary page is not counted twice). Stops after the segment
    that reaches ``floor``, after page 1, or when ``calls_left()`` says the budget is spent.
    """
    size = PER_PAGE
    located = locate_resume_page(fetcher, target, hint, size)
    page = located.page_data
    # A short page that does not reach ``high`` would flag every id above it: it must be
    # the end, or the server's smaller pages (then its page numbers are at that size).
    reaches = page.last_id is not None and page.last_id >= high
    # Pages below the top are read at the size served: learn it unless page 1 is the top.
    smaller = served_size(fetcher, page, size, probe=not reaches or page.number > 1)
    if smaller is not None:
        logger.warning(
            "store %s: page %d: the server serves %d orders a page, not %d; reading at %d",
            store,
            page.number,
            smaller,
            size,
            smaller,
        )
        size = smaller
        if not reaches:
            # The target is the highest id read or near it: the last page, or the same count.
            hint = page.last_page or max(page.number, hint * PER_PAGE // size)
            page = locate_resume_page(fetcher, target, hint, size).page_data
    while True:
        segment = _segment(store, page, high)
        yield segment
        if page.number == 1 or (floor is not None and segment.low <= floor):
            return
        if calls_left is not None and not calls_left():
            return
        high = segment.low - 1
        page = fetcher.fetch_page(page.number - 1, size)
        _check_full(store, page, size)
