"""What a store's completeness check costs after its sync in the same run.

The check reuses the pages the sync has just read where one answer stands for a new one
(ecomanager/memo.py): an idle store's sync and check make only the sync's requests, yet
a lost order is still found, and a window over several pages is still read fresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import delete

from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import orders as orders_table
from ecosync_pipeline.sync.batch import StoreOutcome, sync_and_count
from ecosync_pipeline_tests.test_defs.conftest import Env


@pytest.fixture
def runtime(env: Env) -> Iterator[Runtime]:
    """The test stores read at 100 a page: the check's audit page size, so NATUR's 95
    orders are one page for the sync, the count and the audit alike."""
    settings_stores = env.settings.stores()
    stores = [replace(s, per_page=100, import_per_page=100) for s in settings_stores]
    with Runtime.from_settings(env.settings, stores=stores) as rt:
        yield rt


def turn(env: Env, runtime: Runtime, store: str) -> tuple[StoreOutcome, int]:
    """One store's sync and check, and the requests the server answered for them."""
    env.simulator.reset_counts(store)
    outcome = sync_and_count(runtime, store, None)
    assert outcome.error is None
    return outcome, env.simulator.stats(store)["total"]


def test_an_idle_stores_check_makes_no_request_beyond_its_syncs(env: Env, runtime: Runtime) -> None:
    first, _ = turn(env, runtime, "NATUR")
    assert first.summary is not None and first.summary.order_count == 95
    outcome, requests = turn(env, runtime, "NATUR")
    assert outcome.result is not None and outcome.served is not None
    assert outcome.audit is not None
    assert requests == outcome.result.api_calls >= 1
    # Judged all the same: everything the count and the audit saw is in the database.
    assert outcome.served.served == outcome.summary.order_count == 95
    assert outcome.audit.missing == 0 and outcome.audit.served >= 1


def test_a_lost_order_is_found_from_the_page_the_sync_read(env: Env, runtime: Runtime) -> None:
    env.simulator.add_orders("NATUR", 150)
    turn(env, runtime, "NATUR")
    # On page 1 of 3: the next sync re-reads only the last page, so it cannot restore it.
    lost = env.simulator.page_ids("NATUR", 1, per_page=100)[10]
    with runtime.engine.begin() as conn:
        conn.execute(
            delete(orders_table).where(
                orders_table.c.store == "NATUR", orders_table.c.order_id == lost
            )
        )
    outcome, requests = turn(env, runtime, "NATUR")
    assert outcome.result is not None and outcome.served is not None
    assert outcome.summary is not None
    assert requests == outcome.result.api_calls
    assert outcome.served.served == 245
    assert outcome.served.served - outcome.summary.order_count == 1


def test_a_window_over_several_pages_is_read_fresh_by_the_audit(env: Env, runtime: Runtime) -> None:
    turn(env, runtime, "NATUR")
    env.simulator.add_orders("NATUR", 150)
    outcome, requests = turn(env, runtime, "NATUR")
    assert outcome.result is not None and outcome.audit is not None
    assert outcome.result.orders_new == 150
    # The window (the 150 new orders and the old last one) spans pages 1 to 3 of 100:
    # every page the audit compared was fetched for it, none taken from the sync's.
    assert outcome.audit.pages >= 2
    assert outcome.audit.missing == 0
    assert requests == outcome.result.api_calls + outcome.audit.api_calls
