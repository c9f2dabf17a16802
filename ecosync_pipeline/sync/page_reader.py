"""Where a sync's pages come from: a reader that fetches one page ahead.

    reader.next()      the next page, checked against the contract (settle, PageGuard)
    reader.prefetch()  start fetching the page after it, while the caller commits

The engine only asks for pages and commits them in order; how pages are addressed and
how a server's answers are checked live here. ``PageNumberReader`` reads ascending page
numbers from the position's page; another addressing (newest first with a keyset
cursor) is a sibling with the same two methods.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Protocol

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.verify import verify
from ecosync_pipeline.sync.contract import PageGuard, Settled, settle

logger = logging.getLogger(__name__)


class CallCount(Protocol):
    @property
    def total(self) -> int: ...


class SyncClient(PageFetcher, Protocol):
    """What the sync needs of an API client: pages, and how many calls it has made."""

    @property
    def stats(self) -> CallCount: ...


class PageReader(Protocol):
    """The pages of one sync run, in the order they are committed."""

    def next(self, position: SyncPosition) -> Settled:
        """The next page (``position``: what is committed so far), checked; raises ApiError."""
        ...

    def prefetch(self) -> None:
        """Start fetching the page after the last one returned."""
        ...


class PageNumberReader:
    """Ascending page numbers from the resume page, one page fetched ahead in a thread."""

    def __init__(
        self, client: PageFetcher, store: Store, first: Page | None, page_no: int, per_page: int
    ) -> None:
        self.client = client
        self.store = store
        self.per_page = per_page
        self.fetches = 0
        """Fetches beyond the first page: relocations after deletions during the run."""
        self._pending = first
        self._next_no = page_no
        self._ahead: Future[Page] | None = None
        self._total: int | None = first.total if first else None
        self._last: Page | None = None
        self._guard = PageGuard(store.base_url)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecosync-fetch")

    def __enter__(self) -> PageNumberReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True)

    def next(self, position: SyncPosition) -> Settled:
        """The next page, relocated if deletions moved orders back, settled and checked."""
        page = self._pending
        self._pending = None
        if page is None:
            page = self._ahead.result() if self._ahead else self._fetch(self._next_no)
            self._ahead = None
            if self._deleted_since(page) and position.target is not None:
                page = self._relocate(position, page)
        settled = settle(page, self.client, self.per_page)
        self._guard.check(settled.page)  # before anything is written: the position stays
        if settled.per_page != self.per_page:
            self._guard.allow_overlap()  # pages at the new size may repeat orders read
        self.per_page = settled.per_page
        self._last = settled.page
        self._total = page.total if page.total is not None else self._total
        return settled

    def prefetch(self) -> None:
        if self._last is not None:
            self._ahead = self._pool.submit(self._fetch, self._last.number + 1)

    def _fetch(self, number: int) -> Page:
        return self.client.fetch_page(number, self.per_page)

    def _deleted_since(self, page: Page) -> bool:
        """Orders were deleted upstream since the previous page was read (meta.total fell).

        A deletion on a page already read moves the first order of the next page back
        onto it: reading on by page number would skip that order for good.
        """
        return self._total is not None and page.total is not None and page.total < self._total

    def _relocate(self, position: SyncPosition, page: Page) -> Page:
        """Find again the page holding the last committed order, to read on from there."""
        logger.warning(
            "store %s: %s orders were deleted upstream while page %d was read; locating "
            "order id %s again so the orders that moved back a page are not skipped",
            self.store.identifier,
            (self._total or 0) - (page.total or 0),
            page.number,
            position.target,
        )
        self.fetches += 1
        self._guard.allow_overlap()
        return verify(position, self.client, page.per_page).page
