"""Layer 3: positions computed from the orders database (PostgreSQL and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from ecosync_pipeline.positions.database_layer import DatabaseLayer, page_hint
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline_tests.test_positions.fakes import (
    fill_orders,
    ids_with_gaps,
    store,
    upsert_ids,
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_database_layer_gives_first_sync_for_store_without_orders(engine: Engine) -> None:
    position = DatabaseLayer(engine).read(store("NATUR"))
    assert (position.last_page, position.target, position.source) == (1, None, "calculated")
    assert position.verified


def test_database_layer_hint_comes_from_count_not_ids(engine: Engine) -> None:
    ids = ids_with_gaps(1000, start=500_000, every=4)  # gaps, and ids far from 1
    upsert_ids(engine, "PURNA", ids)
    position = DatabaseLayer(engine).read(store("PURNA", per_page=20))
    assert position.last_order_id == ids[-1]
    assert position.last_page == 50  # 1000 orders / 20, not 666,000 / 20
    assert position.source == "database"
    assert not position.verified


def test_database_layer_reads_all_stores_in_one_summary(engine: Engine) -> None:
    fill_orders(engine, "NATUR", range(1, 42))
    fill_orders(engine, "JWLR", range(100, 300, 3))
    layer = DatabaseLayer(engine)
    positions = layer.read_many(
        [store("NATUR"), store("JWLR", per_page=100), store("DILST")]
    ).positions
    assert positions["NATUR"].last_page == 3 and positions["NATUR"].last_order_id == 41
    assert positions["JWLR"].last_page == 1 and positions["JWLR"].last_order_id == 298
    assert positions["DILST"].source == "calculated"


@pytest.mark.parametrize(
    ("count", "per_page", "page"),
    [(0, 20, 1), (1, 20, 1), (20, 20, 1), (21, 20, 2), (181_601, 20, 9081), (181_601, 100, 1817)],
)
def test_page_hint_is_ceiling_of_count_over_page_size(count: int, per_page: int, page: int) -> None:
    assert page_hint(count, per_page) == page
