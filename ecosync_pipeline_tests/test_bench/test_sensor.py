"""bench sensor in a tiny form, against the real Redis (the test database)."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from ecosync_pipeline.cli import main
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.lab.bench import claimed_redis, run_sensor_bench
from ecosync_pipeline_tests.conftest import REDIS_MARKER


def test_sensor_bench_times_each_method_healthy_and_after_a_flush(redis_url: str) -> None:
    report = run_sensor_bench(
        store_counts=(5, 50), ticks=2, redis_url=redis_url, redis_marker=REDIS_MARKER
    )
    by_key = {(r.stores, r.state, r.method): r for r in report.rows}
    # positions.loss.detect is what the sensor calls (recovery.watch was folded into it).
    methods = ["probe", "detect", "stores file"]
    if report.sensor_available:
        methods.append("dagster sensor")
    assert set(by_key) == {
        (n, s, m) for n in (5, 50) for s in ("healthy", "flushed") for m in methods
    }
    for n in (5, 50):
        assert by_key[(n, "healthy", "probe")].verdict == f"{n} keys"
        assert by_key[(n, "flushed", "probe")].verdict == "0 keys"
        assert by_key[(n, "healthy", "detect")].verdict == "ok"
        assert by_key[(n, "flushed", "detect")].verdict.startswith("flushed:")
        if report.sensor_available:
            assert by_key[(n, "healthy", "dagster sensor")].verdict.startswith("skip: all")
            assert by_key[(n, "flushed", "dagster sensor")].verdict.startswith("run recover:")
    for row in report.rows:
        assert row.seconds.samples == 2
        assert 0 < row.seconds.minimum <= row.seconds.median <= row.seconds.maximum
    data = json.loads(json.dumps(report.as_dict()))
    assert data["benchmark"] == "sensor" and data["rows"][0]["median_ms"] > 0
    assert "median ms" in report.table()


def test_bench_refuses_a_redis_database_holding_someone_elses_keys(
    redis_url: str, redis_admin: redis.Redis
) -> None:
    redis_admin.delete(REDIS_MARKER)
    redis_admin.set("someone:else", "1")
    with pytest.raises(ConfigError, match="not this benchmark's"), claimed_redis(redis_url):
        pass
    assert redis_admin.get("someone:else") == b"1"  # untouched


def test_cli_bench_sensor_prints_json_and_refuses_a_foreign_database(
    redis_url: str, redis_admin: redis.Redis
) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["bench", "sensor", "--stores", "3", "--redis-url", redis_url])
    assert refused.exit_code == 1
    assert "ConfigError" in refused.output
    redis_admin.delete(REDIS_MARKER)  # an empty database: the bench may claim it
    result = runner.invoke(
        main,
        [
            "bench",
            "sensor",
            "--stores",
            "3",
            "--ticks",
            "1",
            "--no-dagster",
            "--json",
            "--redis-url",
            redis_url,
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sensor_available"] is False
    assert {r["method"] for r in data["rows"]} == {"probe", "detect", "stores file"}
