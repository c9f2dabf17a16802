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
import redis

from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.faults_support import (
    ARRIVAL_RATE,
    Driver,
    FaultFigures,
    Injector,
    RedisProcess,
    Scale,
    audit,
    flush_action,
    quarantined,
    sync_under,
    truncate_action,
)
from ecosync_pipeline_tests.helpers import World

pytestmark = pytest.mark.faults


def _sources(counter: Counter[str]) -> str:
    return ", ".join(f"{source} {n}" for source, n in sorted(counter.items()))


def test_redis_flushed_at_random_moments_loses_and_duplicates_no_order(
    build: Callable[..., World],
    record: Callable[[str], FaultFigures],
    scale: Scale,
    redis_url: str,
) -> None:
    world = build()
    figures = record("(a) Redis FLUSHDB")
    world.simulator.set_faults(None, arrival_rate=ARRIVAL_RATE)
    driver = Driver(world, figures, seed=1)  # no error is allowed: Redis is only a cache
    admin = redis.Redis.from_url(redis_url, socket_timeout=5)
    flusher = Injector(
        "flush",
        flush_action(admin, REDIS_MARKER),
        scale.flushes,
        figures,
        gap=(0.0, 0.1),
        syncing=driver.syncing,
        seed=1,
    )
    try:
        sources = sync_under(flusher, driver)
    finally:
        admin.close()
    assert flusher.done == scale.flushes
    # Some runs must have resumed from the backup after a flush, or nothing was tested.
    assert sources["json"] + sources["database"] > 0, sources
    figures.notes.append(f"runs resumed from: {_sources(sources)}")
    audit(driver)


def test_redis_killed_and_restarted_mid_sync_loses_and_duplicates_no_order(
    build: Callable[..., World],
    record: Callable[[str], FaultFigures],
    scale: Scale,
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    rng = random.Random(2)
    try:
        world = build(redis_url=server.url)
        figures = record("(b) Redis SIGKILL + restart")
        world.simulator.set_faults(None, arrival_rate=ARRIVAL_RATE)
        # Retry Redis soon after a failure, so the restarted server is written to again
        # within the same run (the default waits 15 s).
        driver = Driver(world, figures, redis_retry_after=0.05, seed=2)

        def kill_and_restart() -> bool:
            server.kill()
            time.sleep(rng.uniform(0.02, 0.3))
            server.restart()
            return True

        killer = Injector(
            "redis-kill",
            kill_and_restart,
            scale.redis_kills,
            figures,
            gap=(0.1, 0.5),
            syncing=driver.syncing,
            seed=2,
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
    build: Callable[..., World],
    record: Callable[[str], FaultFigures],
    scale: Scale,
    redis_url: str,
) -> None:
    world = build()
    figures = record("(d) backup file truncated")
    backup = Path(world.settings.backup_path)
    world.simulator.set_faults(None, arrival_rate=ARRIVAL_RATE)
    driver = Driver(world, figures, seed=4)
    rng = random.Random(4)
    cut = truncate_action(backup, rng)
    admin = redis.Redis.from_url(redis_url, socket_timeout=5)
    flush = flush_action(admin, REDIS_MARKER)
    # Half the faults land while runs write the file; the other half between runs, with
    # Redis flushed too, so the next run has to read the damaged file.
    during = Injector(
        "truncate",
        cut,
        scale.truncations // 2,
        figures,
        gap=(0.0, 0.15),
        syncing=driver.syncing,
        seed=4,
    )
    wanted = scale.truncations - scale.truncations // 2
    between = 0

    def damage_between_runs() -> None:
        nonlocal between
        if between < wanted:
            flush()
            if cut():
                between += 1
                figures.add("injected")

    try:
        sources = sync_under(
            during,
            driver,
            min_rounds=0,
            more=lambda: between < wanted,
            after_round=damage_between_runs,
        )
    finally:
        admin.close()
    moved = quarantined(backup)
    # Every damaged file read between runs was moved aside, not trusted, not deleted.
    assert len(moved) >= between, (len(moved), between)
    assert sources["database"] > 0, sources
    figures.notes.append(
        f"{len(moved)} damaged files moved aside; runs resumed from: {_sources(sources)}"
    )
    audit(driver)
