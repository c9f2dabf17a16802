"""The page locator: find the page a sync must resume from, in a logarithmic number of fetches.

The resume page for a target id (the last synced order id) is the last page whose first
id is <= target, or page 1 when there is none. It holds the target while the target
still exists, and no id above the target lies on a page before it, so re-reading it and
everything after it can skip nothing.

Pages are in ascending id order, so "first id <= target" is true on pages 1..R and false
after R (an empty page past the end counts as above everything). The locator gallops
from the hint (steps 1, 3, 7, ... pages away) until that predicate flips, then bisects
between the last page where it held and the first where it did not. The hint page is
always the first fetch, and a page that holds the target, or that ``meta.last_page``
calls the store's last, ends the search at once: a good hint costs one fetch. A hint
that is ``d`` pages off costs at most ``2 * ceil(log2(d + 1)) + 2`` fetches.

A page shorter than asked is not the end by itself: the contract sets only a maximum
page size, so a server may serve 15 of the 20 asked on every page. Its page numbers are
then at the size it serves, and a hint computed at the size asked is a quarter of the
store off: when the caller can convert its hint (``resized``), the first page's
``meta.per_page``, or two short pages in a row, give the size served and the search
starts again from the converted hint (one or two fetches more, not a quarter of the
store). Without ``resized`` (the mirror, which learns the size itself and locates
again), any short page at or below the target still ends the search.

Ids are not dense (deleted orders leave gaps, a store need not start at 1) and deletions
shift later orders towards page 1; the search relies only on each fetched page's ids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.models import Page

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Located:
    """The resume page, the Page as fetched (for the sync to reuse) and what it cost."""

    page: int
    page_data: Page
    fetches: int
    target: int | None = None
    served_size: int | None = None
    """The smaller page size the server serves, when the search learned it on the way."""

    @property
    def holds_target(self) -> bool:
        """True when the resume page still contains the target id."""
        return self.target is not None and self.target in self.page_data.ids


def fetch_bound(hint: int, true_page: int) -> int:
    """The most fetches the locator may use for a hint ``|hint - true_page|`` pages off."""
    distance = abs(max(1, hint) - true_page)
    return 2 * math.ceil(math.log2(distance + 1)) + 2


class _Search:
    """The pages fetched so far, and the predicate the search runs on."""

    def __init__(
        self, fetcher: PageFetcher, target: int, per_page: int, *, short_ends: bool = False
    ) -> None:
        self.fetcher = fetcher
        self.target = target
        self.per_page = per_page
        self.short_ends = short_ends
        """A short page at or below the target ends the search (see locate_resume_page)."""
        self.pages: dict[int, Page] = {}
        self.served: int | None = None
        """What ``served_size`` found, kept for the caller (Located.served_size)."""

    def fetch(self, number: int) -> Page:
        page = self.pages.get(number)
        if page is None:
            page = self.fetcher.fetch_page(number, self.per_page)
            self.pages[number] = page
        return page

    def at_or_below(self, page: Page) -> bool:
        """Whether the page's first id is <= target (an empty page is above everything)."""
        return page.first_id is not None and page.first_id <= self.target

    def is_resume_page(self, page: Page) -> bool:
        """The shortcut: a page at or below the target that reaches it, or that is the end."""
        if not self.at_or_below(page):
            return False
        last = page.last_id
        ends = page.is_end if self.short_ends else _claims_end(page)
        return (last is not None and last >= self.target) or ends

    def served_size(self, number: int) -> int | None:
        """The page size the server serves when it is below the size asked, else None.

        ``meta.per_page`` says it; without meta, a short page followed by a non-empty one
        is not the end, so its count is the size (the next page is the gallop's next
        fetch anyway).
        """
        page = self.pages[number]
        if page.meta_per_page is not None:
            self.served = page.meta_per_page if page.meta_per_page < self.per_page else None
        elif 0 < page.count_served < self.per_page and self.at_or_below(page):
            self.served = page.count_served if not self.fetch(number + 1).is_empty else None
        return self.served

    def done(self, number: int) -> Located:
        return Located(
            page=number,
            page_data=self.pages[number],
            fetches=len(self.pages),
            target=self.target,
            served_size=self.served,
        )


def locate_resume_page(
    fetcher: PageFetcher,
    target: int | None,
    hint: int,
    per_page: int,
    resized: Callable[[int], int] | None = None,
) -> Located:
    """Find the resume page for ``target`` (the last synced order id), starting at ``hint``.

    ``target`` None means nothing was synced yet: the answer is page 1 (fetched, so the
    sync can reuse it). ``resized(size)`` is the hint at another page size, used when the
    server serves fewer than ``per_page``. Without it, a short page at or below the target
    ends the search: a caller that learns the server's size from that page and locates
    again at it (the mirror's descent) spends one fetch there, not a gallop. Raises
    whatever the fetcher raises (ApiError for the client).
    """
    if target is None:
        search = _Search(fetcher, 0, per_page)
        search.fetch(1)
        return Located(page=1, page_data=search.pages[1], fetches=1, target=None)
    search = _Search(fetcher, target, per_page, short_ends=resized is None)
    start = max(1, hint)
    first = search.fetch(start)
    if search.is_resume_page(first):
        return _found(search.done(start), hint)
    served = search.served_size(start) if resized is not None else None
    if resized is not None and served is not None and max(1, resized(served)) != start:
        start = max(1, resized(served))
        first = search.fetch(start)
        if search.is_resume_page(first):
            return _found(search.done(start), hint)
    if search.at_or_below(first):
        lo, hi = _gallop_up(search, start)
    else:
        found = _gallop_down(search, start)
        if isinstance(found, Located):
            return _found(found, hint)
        lo, hi = found
    return _found(_bisect(search, lo, hi), hint)


def _gallop_up(search: _Search, start: int) -> tuple[int, int]:
    """From a page at or below the target, step up until a page is above it.

    Returns (lo, hi) with lo at or below and hi above; a resume page found on the way is
    returned as (page, page + 1) so the bisection ends at once.
    """
    lo, step = start, 1
    while True:
        probe = start + step
        page = search.fetch(probe)
        if not search.at_or_below(page):
            return lo, probe
        if search.is_resume_page(page):
            return probe, probe + 1
        lo = probe
        step = step * 2 + 1


def _gallop_down(search: _Search, start: int) -> Located | tuple[int, int]:
    """From a page above the target, step down until a page is at or below it (or page 1)."""
    hi, step = start, 1
    while True:
        probe = max(1, start - step)
        page = search.fetch(probe)
        if search.at_or_below(page):
            if search.is_resume_page(page) or probe + 1 == hi:
                return search.done(probe)
            return probe, hi
        if probe == 1:
            # Every page is above the target (or the store is empty): resume at page 1.
            return search.done(1)
        hi = probe
        step = step * 2 + 1


def _bisect(search: _Search, lo: int, hi: int) -> Located:
    """Narrow (lo at or below, hi above) to adjacent pages; lo is then the resume page."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        page = search.fetch(mid)
        if not search.at_or_below(page):
            hi = mid
        elif search.is_resume_page(page):
            return search.done(mid)
        else:
            lo = mid
    return search.done(lo)


def served_size(fetcher: PageFetcher, page: Page, asked: int, *, probe: bool) -> int | None:
    """The smaller page size the server serves, when ``page`` is short.

    None when the page is full or empty, or the end while nothing says the server serves
    fewer than asked: ``meta`` calls it the last, or, with ``probe`` and no ``meta``, the
    next page is empty (one more call) and the page below, when there is one, is full
    (one more: a short page below the end is the server's size, as two short pages in a
    row are).
    """
    served = page.count_served
    if page.is_empty or served >= asked:
        return None
    cap = page.meta_per_page
    if cap is not None and served <= cap < asked:
        return cap
    if page.last_page is not None:
        return None if page.number >= page.last_page else served
    if not probe:
        return None
    if not fetcher.fetch_page(page.number + 1, asked).is_empty:
        return served
    if page.number == 1:
        return None
    below = fetcher.fetch_page(page.number - 1, asked).count_served
    return below if 0 < below < asked else None


def _claims_end(page: Page) -> bool:
    """``meta.last_page`` says this short page is the store's last (a short page alone
    may be a server serving fewer than asked)."""
    return page.is_end and page.last_page is not None and page.number >= page.last_page


def _found(located: Located, hint: int) -> Located:
    logger.debug(
        "store %s: resume page %d for target %s (hint %d, %d fetches)",
        located.page_data.store,
        located.page,
        located.target,
        hint,
        located.fetches,
    )
    return located
