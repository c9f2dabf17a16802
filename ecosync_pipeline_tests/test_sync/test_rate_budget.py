"""A sync under the store's shared rate budget: a first import larger than what is left
stops cleanly after its last commit, says when it will finish, and the next run (the
next day) carries on without skipping or duplicating an order."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.ratebudget import RateBudget
from ecosync_pipeline.sync.engine import sync_store
from ecosync_pipeline_tests.helpers import make_world, reconcile

SPEC = StoreSpec("SHOP", name="Shop", first_id=1000, count=430, gap_rate=0.05, seed=7)
# 3 calls an "hour" of 6 s (time scale 600); a run waits at most a second for a call.
TODAY = RateBudget(per_second=1, per_minute=2, per_hour=3, per_day=4, time_scale=600)


def test_first_import_beyond_the_budget_stops_cleanly_and_the_next_run_carries_on(
    simulator: Simulator,
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world(
        simulator,
        [SPEC],
        database_url=postgres_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        import_per_page=100,
    )
    store = world.stores[0]
    spent = SharedBudget("SHOP", TODAY, redis_url, max_wait=1.0)
    with (
        world.open() as rt,
        caplog.at_level(logging.INFO, logger="ecosync_pipeline"),
        EcoManagerClient.from_store(store, rate_limiter=spent) as client,
    ):
        first = sync_store(store, chain=rt.chain, client=client, engine=rt.engine)
    assert first.stopped_by_budget and not first.reached_end
    assert 0 < first.orders_new < 430 and first.api_calls == 3
    assert "about 4 API calls to go" in caplog.text and "next one carries on" in caplog.text
    assert "rate budget spent (3/3 this hour)" in caplog.text
    # The next day: the same store, counted in the same Redis, with room again.
    tomorrow = SharedBudget("SHOP", RateBudget.derived(1000), redis_url)
    with world.open() as rt:
        with EcoManagerClient.from_store(store, rate_limiter=tomorrow) as client:
            second = sync_store(store, chain=rt.chain, client=client, engine=rt.engine)
        assert second.reached_end and second.from_page == first.to_page
        assert first.orders_new + second.orders_new == 430
        rec = reconcile(rt, simulator, "SHOP")
    assert (rec.missing, rec.duplicated) == (0, 0), rec
    assert tomorrow.quota().window("day").used == first.api_calls + second.api_calls
