"""A small store on the simulator over HTTP, synced into each backend in turn."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.lab.simulator.spec import DEFAULT_UNTIL
from ecosync_pipeline_tests.helpers import World, make_world

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
def build(
    simulator: Simulator,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., World]:
    """make_world for SPEC (or given specs) on this test's databases."""

    def build_world(specs: list[StoreSpec] | None = None, **overrides: Any) -> World:
        options: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "tmp_path": tmp_path,
            "monkeypatch": monkeypatch,
            "import_per_page": 100,
        }
        return make_world(simulator, specs or [SPEC], **{**options, **overrides})

    return build_world


@pytest.fixture
def world(build: Callable[..., World]) -> World:
    return build()
