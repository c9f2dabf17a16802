"""The pages a store's sync just read, for the checks that follow it in the same run.

After a sync, its completeness check locates the store's last synced id (the page the
sync ended on) and audits the window the sync read (often that same page). Fetching
them again costs two calls a store for an answer given seconds before: at a thousand
idle stores a tick, two thirds of the tick's calls. A ``PageMemo`` watches one client
and keeps its last few answers, so a reader may take a page from it instead.

Only a reader for which one recent answer is as good as a new one may: the count of
served orders (one page, the rest follows from full pages), and an audit whose whole
window lies on that one page (one response is one consistent snapshot; a window over
several pages is read fresh, page by page, as always).
"""

from __future__ import annotations

from collections import OrderedDict

from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Page

DEFAULT_KEEP = 4
"""Answers kept: a sync's last pages, not a first import's thousands."""


class PageMemo:
    """The last answers of one client by (page, per_page), and that client for the rest."""

    def __init__(self, client: EcoManagerClient, keep: int = DEFAULT_KEEP) -> None:
        self.client = client
        self._keep = keep
        self._pages: OrderedDict[tuple[int, int], Page] = OrderedDict()
        self.recalled = 0
        """Pages served from memory instead of fetched."""
        client.on_page(self._record)

    def _record(self, page: Page) -> None:
        key = (page.number, page.per_page)
        self._pages.pop(key, None)
        self._pages[key] = page
        while len(self._pages) > self._keep:
            self._pages.popitem(last=False)

    def recall(self, page: int, per_page: int) -> Page | None:
        """The last answer for this page at this size, if it is still kept."""
        return self._pages.get((page, per_page))

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        """The kept answer, else a fetch (satisfies ``PageFetcher``)."""
        size = self.client.store.per_page if per_page is None else per_page
        kept = self.recall(page, size)
        if kept is not None:
            self.recalled += 1
            return kept
        return self.client.fetch_page(page, size)

    def covering(self, low: int, high: int) -> WindowReader:
        """A fetcher for an audit of ids ``low..high``: see ``WindowReader``."""
        return WindowReader(self, low, high)


class WindowReader:
    """Serves a kept page only as the first fetch and only when it covers the whole window.

    A covering page is one whose ids start at or below ``low`` (or page 1) and reach
    ``high`` (or the end of the store): the audit then reads that page alone. Any other
    page, and any page after the first, is fetched.
    """

    def __init__(self, memo: PageMemo, low: int, high: int) -> None:
        self._memo = memo
        self._low = low
        self._high = high
        self._first = True

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        size = self._memo.client.store.per_page if per_page is None else per_page
        first, self._first = self._first, False
        kept = self._memo.recall(page, size) if first else None
        if kept is not None and _covers(kept, self._low, self._high):
            self._memo.recalled += 1
            return kept
        return self._memo.client.fetch_page(page, size)


def _covers(page: Page, low: int, high: int) -> bool:
    if page.is_empty:
        return False
    starts_below = page.number == 1 or (page.first_id is not None and page.first_id <= low)
    reaches = page.is_end or (page.last_id is not None and page.last_id >= high)
    return starts_below and reaches
