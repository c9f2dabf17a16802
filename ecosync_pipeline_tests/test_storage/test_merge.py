"""The merge rule under concurrent writers, on PostgreSQL and SQLite (DESIGN, invariant 15).

Whatever order two writers of the same orders commit in (the poll's page and a webhook,
say), the newer state wins and a deletion recorded after a read is never undone by it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ecosync_pipeline.storage import Gone, Served, ensure_store, merge_orders
from ecosync_pipeline.storage.schema import orders
from ecosync_pipeline_tests.test_storage.factories import T0, make_order

ROUNDS = 20
"""Races of two writers; in opposite lock orders they would deadlock within a few."""


def _race(engine: Engine, *jobs: list[Served | Gone]) -> None:
    """Run each list of writes in its own transaction, all started at once."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(writes: list[Served | Gone]) -> None:
        try:
            barrier.wait()
            with engine.begin() as conn:
                merge_orders(conn, "NATUR", writes)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []


def _rows(engine: Engine) -> dict[int, tuple[str | None, bool]]:
    c = orders.c
    with engine.connect() as conn:
        found = conn.execute(select(c.order_id, c.order_state, c.deleted_at)).all()
    return {int(i): (state, deleted is not None) for i, state, deleted in found}


def test_two_writers_of_the_same_new_orders_end_in_the_newer_state_whatever_commits_first(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
    for round_ in range(ROUNDS):
        ids = range(1000 * round_ + 1, 1000 * round_ + 101)
        older = [Served(make_order(i, "Confirmé"), T0) for i in ids]
        newer = [
            Served(make_order(i, "Livré", updated_at=T0 + timedelta(minutes=1)), T0)
            for i in reversed(ids)  # the other lock order too
        ]
        first, second = (older, newer) if round_ % 2 else (newer, older)
        _race(engine, first, second)
    rows = _rows(engine)
    assert len(rows) == ROUNDS * 100
    assert set(rows.values()) == {("Livré", False)}


def test_a_deletion_racing_a_page_read_before_it_stays_a_deletion(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        merge_orders(conn, "NATUR", [Served(make_order(i), T0) for i in range(1, 41)])
    read_at = T0 + timedelta(minutes=5)
    deleted_at = read_at + timedelta(seconds=1)
    page = [Served(make_order(i), read_at) for i in range(1, 41)]
    gone = [Gone(i, deleted_at, version=T0) for i in range(1, 41, 2)]
    _race(engine, page, gone)
    rows = _rows(engine)
    assert {i for i, (_, deleted) in rows.items() if deleted} == set(range(1, 41, 2))
