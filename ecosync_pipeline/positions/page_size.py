"""The page-size rule, in one place: which page size a run reads, and converting a position.

A first import reads ``import_per_page`` orders a page (100: a fifth of the calls), the
incremental sync ``per_page`` (20). A position remembers its page size and, since
``last_index``, the last synced order's place on its page, so converting it is exact:
the order is number ``(last_page - 1) * per_page + last_index`` of the store, on page
``ceil(number / new_per_page)`` at the new size. A position without ``last_index`` (the
original system's, or an older ecosync's) converts to the first page that can hold it,
a hint that verification then locates.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ecosync_pipeline.config import Store
from ecosync_pipeline.positions.model import SyncPosition


def run_page_size(store: Store, position: SyncPosition, truth: SyncPosition | None) -> int:
    """The page size to verify and sync with: ``import_per_page`` during a first import.

    A store with no orders starts a first import; a position taken with the import size
    continues it (a budgeted import of thousands of pages). The sync converts the
    position to ``per_page`` when the import reaches the end.
    """
    if store.import_per_page <= store.per_page:
        return store.per_page
    importing = truth is None or truth.target is None or position.per_page == store.import_per_page
    return store.import_per_page if importing else store.per_page


def page_for(position: SyncPosition, per_page: int) -> int:
    """The page that holds the position's last synced order at ``per_page`` a page."""
    page = max(1, position.last_page)
    if per_page == position.per_page:
        return page
    if position.last_index is not None:
        number = (page - 1) * position.per_page + position.last_index
        return max(1, math.ceil(number / per_page))
    return max(1, (page - 1) * position.per_page // per_page + 1)


def converted(position: SyncPosition, per_page: int) -> SyncPosition:
    """The position at another page size: the page holding its last order, and its index.

    The ids of the new page are unknown until it is read, so they are left empty (the
    last synced order id, the target, is kept).
    """
    if per_page == position.per_page:
        return position
    page = page_for(position, per_page)
    index = None
    if position.last_index is not None:
        index = (position.last_page - 1) * position.per_page + position.last_index
        index -= (page - 1) * per_page
    return replace(
        position,
        last_page=page,
        per_page=per_page,
        last_index=index,
        first_id=None,
        last_id=position.target,
        verified=False,
    )
