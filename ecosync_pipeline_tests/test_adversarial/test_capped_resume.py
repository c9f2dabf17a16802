"""Resuming on a server that serves fewer orders a page than asked (the contract sets only
the maximum): the next sync, and one after a cache loss, cost the new pages plus a few
calls, and skip or duplicate nothing.

The store asks 20 a page, the server serves 15, with and without ``meta``. A short page
is not the store's end, and page numbers are at the size the server serves: a position
converted as if the server served 20 lands a quarter of the store too low, and a locator
that takes every short page for the end then re-reads that quarter on every run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ecosync_pipeline.ecomanager.locator import fetch_bound
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, make_token

CAP = 15
IDS = [9000 + 3 * i + (i % 2) for i in range(3000)]
"""Sparse and far from 1: 200 pages of 15, where id / 20 means nothing."""
NEW_ORDERS = 5
RESUME_CALLS = 8
"""The page read again and the new orders' page, the one after them, the locator's fetch
that learns the size served, and without meta the two that tell a short page from the
end (the page after it, the page again)."""


def add_orders(store: AdversarialStore) -> None:
    """Five new orders, on the last page and after it."""
    top = store.ids[-1]
    store.add(*range(top + 1, top + 1 + NEW_ORDERS))


def sync_counting(world: CliWorld, store: AdversarialStore) -> int:
    """Run `ecosync sync` and return the page requests it made."""
    store.requests.clear()
    result = world.sync()
    assert result.exit_code == 0, result.output
    return len(store.requests)


def assert_mirrors(world: CliWorld, store: AdversarialStore) -> None:
    """Every served order is in the table, and nothing else."""
    assert set(world.stored(store.identifier)) == set(store.ids)


@pytest.mark.parametrize("meta", [True, False], ids=["meta", "no-meta"])
def test_resuming_on_a_capped_server_costs_the_new_pages_plus_a_few_calls(
    meta: bool, cli_world: CliWorld, redis_url: str
) -> None:
    store = AdversarialStore("CAPPED", make_token(), list(IDS), per_page_cap=CAP, meta=meta)
    cli_world.configure(store, extra={"import_per_page": 100})
    sync_counting(cli_world, store)
    assert_mirrors(cli_world, store)
    for _ in range(2):  # the position each run leaves must serve the next one as well
        add_orders(store)
        assert sync_counting(cli_world, store) <= RESUME_CALLS
        assert_mirrors(cli_world, store)
    # Redis flushed and the backup gone: the database's hint (its count / 20) is a
    # quarter of the store off; the locator may spend its bound on that, no more.
    redis.Redis.from_url(redis_url).flushdb()
    Path(cli_world.env["ECOSYNC_BACKUP_PATH"]).unlink()
    add_orders(store)
    synced = len(store.ids) - NEW_ORDERS
    hint, true_page = -(-synced // 20), -(-synced // CAP)
    assert sync_counting(cli_world, store) <= fetch_bound(hint, true_page) + RESUME_CALLS
    assert_mirrors(cli_world, store)
