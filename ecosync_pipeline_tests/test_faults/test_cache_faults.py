"""Losing the caches while stores sync: Redis flushed, Redis killed, the backup file cut short.

None of these may fail a sync (DESIGN, invariant 6): the runs go on from the other
layers, and at the end nothing is missing or doubled.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.faults_support import (
    Driver,
    FaultFigures,
    RedisProcess,
    Scale,
    audit,
    injector_for,
    quarantined,
    redis_flusher,
    sync_under,
    truncate_action,
)
from ecosync_pipeline_tests.helpers import World

pytestmark = pytest.mark.faults


def _sources(counter: Counter[str]) -> str:
    return ", ".join(f"{source} {n}" for source, n in sorted(counter.items()))


def test_redis_flushed_at_random_moments_loses_and_duplicates_no_order(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale, redis_url: str
) -> None:
    world, figures = scenario("(a) Redis FLUSHDB")
    driver = Driver(world, figures, seed=1)  # no error is allowed: Redis is only a cache
    with redis_flusher(redis_url, REDIS_MARKER) as flush:
        flusher = injector_for(driver, "flush", flush, scale.flushes, gap=(0.0, 0.1), seed=1)
        sources = sync_under(flusher, driver)
    assert flusher.done == scale.flushes
    # Some runs must have resumed from the backup after a flush, or nothing was tested.
    assert sources["json"] + sources["database"] > 0, sources
    figures.notes.append(f"runs resumed from: {_sources(sources)}")
    audit(driver)


def test_redis_killed_and_restarted_mid_sync_loses_and_duplicates_no_order(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale, tmp_path: Path
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    rng = random.Random(2)
    try:
        world, figures = scenario(
            "(b) Redis SIGKILL + restart", world_options={"redis_url": server.url}
        )
        # Retry Redis soon after a failure, so the restarted server is written to again
        # within the same run (the default waits 15 s).
        driver = Driver(world, figures, redis_retry_after=0.05, seed=2)

        def kill_and_restart() -> bool:
            server.kill()
            time.sleep(rng.uniform(0.02, 0.3))
            server.restart()
            return True

        killer = injector_for(
            driver, "redis-kill", kill_and_restart, scale.redis_kills, gap=(0.1, 0.5), seed=2
        )
        sources = sync_under(killer, driver)
        assert killer.done == scale.redis_kills
        figures.notes.append(
            f"redis-server restarted {server.restarts} times; runs resumed from: "
            f"{_sources(sources)}"
        )
        audit(driver)
    finally:
        server.stop()


def test_backup_file_cut_short_is_quarantined_and_the_sync_carries_on(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale, redis_url: str
) -> None:
    world, figures = scenario("(d) backup file truncated")
    backup = Path(world.settings.backup_path)
    driver = Driver(world, figures, seed=4)
    rng = random.Random(4)
    cut = truncate_action(backup, rng)
    # Half the faults land while runs write the file; the other half between runs, with
    # Redis flushed too, so the next run has to read the damaged file.
    during = injector_for(driver, "truncate", cut, scale.truncations // 2, gap=(0.0, 0.15), seed=4)
    wanted = scale.truncations - scale.truncations // 2
    between = 0

    with redis_flusher(redis_url, REDIS_MARKER) as flush:

        def damage_between_runs() -> None:
            nonlocal between
            if between < wanted:
                flush()
                if cut():
                    between += 1
                    figures.add("injected")

        sources = sync_under(
            during,
            driver,
            min_rounds=0,
            more=lambda: between < wanted,
            after_round=damage_between_runs,
        )
    moved = quarantined(backup)
    # Every damaged file read between runs was moved aside, not trusted, not deleted.
    assert len(moved) >= between, (len(moved), between)
    assert sources["database"] > 0, sources
    figures.notes.append(
        f"{len(moved)} damaged files moved aside; runs resumed from: {_sources(sources)}"
    )
    audit(driver)
