"""A small store on the simulator over HTTP, synced into each backend in turn."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.lab.simulator.spec import DEFAULT_UNTIL
from ecosync_pipeline_tests.helpers import World

# 500 orders over 80 days: the last ten days' orders are still open (En dispatch,
# Confirmé, En cours, Expédié), the older ones final. 5 pages of 100.
SPEC = StoreSpec(
    "SHOP",
    name="Shop",
    first_id=1000,
    count=500,
    gap_rate=0.04,
    seed=11,
    started=DEFAULT_UNTIL - timedelta(days=80),
)


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """PostgreSQL here; the test that matters on both backends asks for SQLite itself."""
    return postgres_url


@pytest.fixture
def specs() -> list[StoreSpec]:
    return [SPEC]


@pytest.fixture
def build_options() -> dict[str, Any]:
    return {"import_per_page": 100}


@pytest.fixture
def world(build: Callable[..., World]) -> World:
    return build()
