"""The original system's two answers to a lost position, as small functions over a PageFetcher.

- ``restart_from_page_one``: its first strategy. The Redis key is gone, so the store
  starts again at page 1 and reads forward to the end (the page shorter than
  ``per_page``). Nothing is missed, but every order is read again: NATUR's 8,808 pages.
- ``old_fix``: its later fix. It estimates the page from the last synced id
  (``lastId / 20 - 10``), reads forward until three consecutive empty pages, keeps
  the orders above the last synced id, and records ``lastPage - 10`` as its position
  ("back 10 pages"). Ids have gaps and need not start at 1, so the estimate overshoots
  the last page (by ~270 pages on NATUR, ~34,000 on PURNA): it reads three empty pages
  and misses every new order.

Both only read ids, so they run on any PageFetcher (the HTTP client, or a replay of
pages already fetched); what they fetched is compared with the truth by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecosync_pipeline.ecomanager import PageFetcher

OLD_PER_PAGE = 20
BACK_PAGES = 10
EMPTY_PAGES_TO_STOP = 3
DEFAULT_MAX_PAGES = 1_000_000


@dataclass(frozen=True)
class BaselineRun:
    """What one strategy fetched: its calls, every id it read, those it would insert."""

    strategy: str
    calls: int
    start_page: int
    fetched_ids: frozenset[int] = field(repr=False)
    inserted_ids: frozenset[int] = field(repr=False)
    recorded_page: int
    """The page the strategy records as its position for the next run."""

    def missing(self, new_ids: frozenset[int] | set[int]) -> int:
        """New orders (not yet in the database) that this run never inserted."""
        return len(set(new_ids) - self.inserted_ids)

    def re_read(self, stored_ids: frozenset[int] | set[int]) -> int:
        """Orders already in the database that it fetched again (duplicates without upsert)."""
        return len(self.fetched_ids & set(stored_ids))


def restart_from_page_one(
    fetcher: PageFetcher, per_page: int = OLD_PER_PAGE, max_pages: int = DEFAULT_MAX_PAGES
) -> BaselineRun:
    """The first strategy: page 1 to the end, inserting everything it reads."""
    ids: set[int] = set()
    page_no = calls = 0
    last_with_data = 1
    while page_no < max_pages:
        page_no += 1
        page = fetcher.fetch_page(page_no, per_page)
        calls += 1
        ids.update(page.ids)
        if not page.is_empty:
            last_with_data = page_no
        if len(page.orders) < per_page:
            break
    frozen = frozenset(ids)
    return BaselineRun("page-1 restart", calls, 1, frozen, frozen, last_with_data)


def old_fix_start_page(last_synced_id: int, per_page: int = OLD_PER_PAGE) -> int:
    """The page the old fix starts from: ``lastId / per_page - 10`` (at least 1)."""
    return max(1, last_synced_id // per_page - BACK_PAGES)


def old_fix(
    fetcher: PageFetcher,
    last_synced_id: int,
    per_page: int = OLD_PER_PAGE,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> BaselineRun:
    """The old fix: from the id estimate, forward until three empty pages, back 10 pages."""
    start = old_fix_start_page(last_synced_id, per_page)
    fetched: set[int] = set()
    inserted: set[int] = set()
    empties = calls = 0
    page_no = start
    last_with_data: int | None = None
    while empties < EMPTY_PAGES_TO_STOP and calls < max_pages:
        page = fetcher.fetch_page(page_no, per_page)
        calls += 1
        if page.is_empty:
            empties += 1
        else:
            empties = 0
            last_with_data = page_no
            fetched.update(page.ids)
            inserted.update(i for i in page.ids if i > last_synced_id)
        page_no += 1
    last_page = last_with_data if last_with_data is not None else page_no - 1
    return BaselineRun(
        "old fix",
        calls,
        start,
        frozenset(fetched),
        frozenset(inserted),
        max(1, last_page - BACK_PAGES),
    )
