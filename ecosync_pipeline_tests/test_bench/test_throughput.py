"""bench sync in a tiny form: the simulator over HTTP, the real PostgreSQL and Redis."""

from __future__ import annotations

import json

from ecosync_pipeline.lab.bench import run_sync_bench
from ecosync_pipeline_tests.conftest import REDIS_MARKER


def test_sync_bench_reports_rates_their_ratio_split_profile_and_flat_memory(
    redis_url: str, postgres_url: str
) -> None:
    report = run_sync_bench(
        orders=(400, 1200),
        runs=2,
        latencies_ms=(0, 5),
        database_url=postgres_url,
        redis_url=redis_url,
        redis_marker=REDIS_MARKER,
    )
    assert [r.latency_ms for r in report.throughput] == [0, 5]
    for row in report.throughput:
        assert row.orders == 400 and row.per_page == 20
        assert row.fetch_rate.samples == row.sync_rate.samples == 2
        assert row.fetch_rate.median > 0 and row.sync_rate.median > 0
        assert 0 < row.ratio < 2
        split = row.split_ms_per_page
        assert split["wall"] > 0 and split["fetch (thread)"] > 0 and split["sql"] > 0
        assert split["json"] > 0 and split["redis"] > 0
    assert report.profile and all(p["tottime"] >= 0 for p in report.profile)
    assert [m.orders for m in report.memory] == [400, 1200]
    assert all(0 < m.tracemalloc_peak_mb < 50 for m in report.memory)
    assert report.goal_met() is None  # judged at 20 ms only
    data = json.loads(json.dumps(report.as_dict()))
    assert data["benchmark"] == "sync" and len(data["throughput"]) == 2
    table = report.table()
    assert "fetch only o/s" in table and "tracemalloc peak MB" in table
