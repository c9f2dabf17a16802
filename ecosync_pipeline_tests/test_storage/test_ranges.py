"""Deletion flags: rows stay, counts leave them out, a re-read order is live again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from ecosync_pipeline.storage import ensure_store, store_summaries, store_summary, upsert_orders
from ecosync_pipeline.storage.ranges import (
    deleted_ids,
    flag_deleted,
    id_ranges,
    stored_in_range,
)
from ecosync_pipeline.storage.store_state import read_state, write_state
from ecosync_pipeline_tests.test_storage.factories import T0, make_order, make_page


def test_flagged_orders_stay_in_the_table_and_leave_every_count(engine: Engine) -> None:
    page = make_page(100, 10)
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", page)
        assert flag_deleted(conn, "NATUR", [103, 109, 999]) == 2
        assert flag_deleted(conn, "NATUR", [103]) == 0  # already flagged
    assert deleted_ids(engine, "NATUR") == [103, 109]
    summary = store_summary(engine, "NATUR")
    # The count leaves them out; the highest synced id is still the mark new orders follow.
    assert (summary.order_count, summary.last_order_id) == (8, 109)
    assert store_summaries(engine)["NATUR"] == summary
    stored = stored_in_range(engine, "NATUR", 100, 109)
    assert sorted(stored) == [o.id for o in page]
    assert [i for i, row in stored.items() if row.deleted] == [103, 109]


def test_only_a_newer_state_read_after_the_flag_makes_an_order_live_again(
    engine: Engine,
) -> None:
    flagged_at = T0 + timedelta(hours=1)
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 5), seen_at=T0)
        assert flag_deleted(conn, "NATUR", [2, 4], at=flagged_at) == 2
    later = flagged_at + timedelta(minutes=5)
    with engine.begin() as conn:
        # The same state read again after the flag: a tie, which never revives.
        again = upsert_orders(conn, "NATUR", [make_order(2)], seen_at=later)
        # A newer state, but read before the order was found gone: stale.
        early = upsert_orders(conn, "NATUR", [make_order(4, updated_at=later)], seen_at=flagged_at)
        # A newer state read after the flag: the order is live again.
        revived = upsert_orders(conn, "NATUR", [make_order(4, updated_at=later)], seen_at=later)
    assert (again.reappeared, again.ties) == (0, (2,))
    assert (early.reappeared, early.stale) == (0, 1)
    assert revived.reappeared == 1
    assert deleted_ids(engine, "NATUR") == [2]
    assert store_summary(engine, "NATUR").order_count == 4


def test_an_order_seen_live_after_the_read_that_found_it_gone_is_not_flagged(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 3), seen_at=T0 + timedelta(minutes=10))
        # The reconciliation's page was read at T0, before the sync's re-read at T0 + 10 min.
        assert flag_deleted(conn, "NATUR", [2], at=T0) == 0
    assert deleted_ids(engine, "NATUR") == []


def test_store_state_round_trips_json_and_overwrites(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        write_state(conn, "NATUR", "reconcile", {"floor": 5, "page": 2})
        write_state(conn, "NATUR", "reconcile", {"floor": 3, "page": 1})
    assert read_state(engine, "NATUR", "reconcile") == {"floor": 3, "page": 1}
    assert read_state(engine, "NATUR", "other") is None


def test_id_ranges_groups_neighbours_in_the_served_order() -> None:
    served = [10, 20, 30, 40, 50, 60]
    assert id_ranges([20, 30, 60], served) == [(20, 30), (60, 60)]
    assert id_ranges([], served) == []
