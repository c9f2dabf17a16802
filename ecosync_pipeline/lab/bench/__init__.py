"""ecosync bench: measurements behind the design's claims, each against real services.

    recovery    resuming after a lost position (Redis flushed; Redis and JSON lost):
                ecosync's verified fallback chain against the old system's page-1
                restart and its id-estimate fix (run_recovery_bench)
    sensor      the cache-loss probe's tick time for 10 to 10,000 stores, and the
                Dagster sensor's when it can be loaded (run_sensor_bench)
    throughput  orders per second fetching only against fetching and upserting, where
                the sync's time goes, and its memory (run_sync_bench)
    baselines   the old system's strategies over any PageFetcher
    resources   the benchmark's own Redis database and a database it creates and drops
    simserver   the simulator served over HTTP from a process of its own (simchild)

Nothing here is imported by the pipeline; the CLI (`ecosync bench ...`) calls it.
"""

from __future__ import annotations

from ecosync_pipeline.lab.bench.baselines import (
    BaselineRun,
    old_fix,
    old_fix_start_page,
    restart_from_page_one,
)
from ecosync_pipeline.lab.bench.recovery import (
    RECOVERY_STORES,
    RecoveryReport,
    RecoveryRow,
    goal_bound,
    run_recovery_bench,
)
from ecosync_pipeline.lab.bench.resources import (
    BENCH_REDIS_MARKER,
    BenchRedis,
    bench_redis_url,
    claimed_redis,
    temporary_postgres,
)
from ecosync_pipeline.lab.bench.sensor import SensorReport, SensorRow, run_sensor_bench
from ecosync_pipeline.lab.bench.simserver import ServedSimulator, served_simulator
from ecosync_pipeline.lab.bench.throughput import (
    MemoryRow,
    SyncBenchReport,
    ThroughputRow,
    run_sync_bench,
)

__all__ = [
    "BENCH_REDIS_MARKER",
    "RECOVERY_STORES",
    "BaselineRun",
    "BenchRedis",
    "MemoryRow",
    "RecoveryReport",
    "RecoveryRow",
    "SensorReport",
    "SensorRow",
    "ServedSimulator",
    "SyncBenchReport",
    "ThroughputRow",
    "bench_redis_url",
    "claimed_redis",
    "goal_bound",
    "old_fix",
    "old_fix_start_page",
    "restart_from_page_one",
    "run_recovery_bench",
    "run_sensor_bench",
    "run_sync_bench",
    "served_simulator",
    "temporary_postgres",
]
