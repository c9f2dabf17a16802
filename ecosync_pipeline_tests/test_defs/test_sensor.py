"""cache_loss_sensor: one scenario per test, asserting the run requests and the cursor."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SensorDefinition,
    build_sensor_context,
)

from ecosync_pipeline.defs.positions import sensors
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.redis_layer import SENTINEL_KEY
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, flush_redis, sync_all


@pytest.fixture(scope="module")
def sensor() -> SensorDefinition:
    return build_cache_loss_sensor(recover_sync_positions)


@pytest.fixture
def sensor_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent instance, as the daemon gives the sensor."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        yield instance


def tick(
    sensor: SensorDefinition,
    env: Env,
    instance: DagsterInstance,
    cursor: str | None,
    resources: dict[str, Any] | None = None,
) -> Any:
    """One tick; its asset events recorded in ``instance``, as the daemon records them."""
    with build_sensor_context(
        instance=instance, cursor=cursor, resources=resources or env.resources
    ) as context:
        result = sensor.evaluate_tick(context)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def cursor_of(result: Any) -> dict[str, Any]:
    return json.loads(result.cursor)


def evaluations(result: Any) -> dict[str, AssetCheckEvaluation]:
    """The check evaluations a tick returned, by check name."""
    return {e.check_name: e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}


def observation(result: Any) -> dict[str, Any]:
    """The metadata of the one materialization of store_sync_positions a tick returned."""
    [seen] = [e for e in result.asset_events if isinstance(e, AssetMaterialization)]
    assert seen.asset_key.path == ["store_sync_positions"]
    return {k: getattr(v, "value", v) for k, v in seen.metadata.items()}


def reset_natur_to_page_one(env: Env) -> None:
    """NATUR's Redis position written back at page 1, as the original system does on restart."""
    runtime = env.runtime()
    try:
        runtime.chain.redis.write(SyncPosition.first_sync("NATUR", "Natura Bio"))
    finally:
        runtime.close()


def healthy_cursor(sensor: SensorDefinition, env: Env, instance: DagsterInstance) -> str:
    """Sync both stores and take one healthy tick: the cursor a running sensor holds."""
    sync_all(env)
    result = tick(sensor, env, instance, None)
    assert not result.run_requests
    return str(result.cursor)


def test_sensor_skips_and_remembers_the_sentinel_when_every_store_is_healthy(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    sync_all(env)
    result = tick(sensor, env, sensor_instance, None)
    assert result.run_requests == []
    assert result.skip_message == f"all {len(STORES)} stores healthy"
    saved = cursor_of(result)
    assert saved["generation"] == env.redis.hget(SENTINEL_KEY, "generation")
    # LossCursor.run_id was never read (issue 10's dead code): the cursor no longer keeps it.
    assert "run_id" not in saved
    assert saved["last_event"] is None


def test_sensor_requests_one_recovery_per_flush_across_ticks_and_a_new_one_next_time(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    generation = json.loads(cursor)["generation"]
    flush_redis(env)
    first = tick(sensor, env, sensor_instance, cursor)
    [request] = first.run_requests
    assert request.run_key == f"recover:flushed:{generation}"
    assert request.tags["ecosync/redis-state"] == "flushed"
    assert cursor_of(first)["last_event"] == f"flushed:{generation}"
    # The same loss on the next tick names the same run: the daemon launches it once.
    second = tick(sensor, env, sensor_instance, first.cursor)
    assert [r.run_key for r in second.run_requests] == [request.run_key]
    # The recovery writes a new sentinel; the next tick sees it and settles.
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    # The first tick after it sees the sentinel the recovery wrote: the loss is mended,
    # so it requests nothing and moves the cursor to the new sentinel.
    settling = tick(sensor, env, sensor_instance, second.cursor)
    assert settling.run_requests == []
    assert "already mended" in (settling.skip_message or "")
    settled = tick(sensor, env, sensor_instance, settling.cursor)
    assert settled.run_requests == []
    assert cursor_of(settled)["generation"] != generation
    # A second flush later is a new loss, and a new run.
    flush_redis(env)
    again = tick(sensor, env, sensor_instance, settled.cursor)
    [new_request] = again.run_requests
    assert new_request.run_key != request.run_key
    assert new_request.run_key.startswith("recover:flushed:")


def test_sensor_requests_recovery_when_one_store_key_is_lost(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    env.redis.delete("ecomanager:pageinfo:PURNA")
    result = tick(sensor, env, sensor_instance, cursor)
    [request] = result.run_requests
    assert request.run_key.startswith("recover:missing:")
    assert cursor_of(result)["last_event"] == request.run_key.removeprefix("recover:")
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    assert tick(sensor, env, sensor_instance, result.cursor).run_requests == []
    # The same key lost again later is a new loss (the recovery moved the epoch on).
    env.redis.delete("ecomanager:pageinfo:PURNA")
    [later] = tick(sensor, env, sensor_instance, result.cursor).run_requests
    assert later.run_key != request.run_key


def test_sensor_requests_recovery_when_one_store_key_is_reset_to_page_one(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    reset_natur_to_page_one(env)
    result = tick(sensor, env, sensor_instance, cursor)
    [request] = result.run_requests
    assert request.run_key.startswith("recover:reset:")
    # Seen again, the same reset is the same run.
    again = tick(sensor, env, sensor_instance, result.cursor)
    assert [r.run_key for r in again.run_requests] == [request.run_key]
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    assert tick(sensor, env, sensor_instance, again.cursor).run_requests == []


def test_sensor_requests_recovery_when_redis_restarted_under_a_new_run_id(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    # A restart with persistence keeps the keys but changes the server's run_id; the
    # sentinel still holds the run_id of the last write.
    env.redis.hset(SENTINEL_KEY, "run_id", "0" * 40)
    result = tick(sensor, env, sensor_instance, cursor)
    [request] = result.run_requests
    assert request.run_key.startswith("recover:restarted:")
    assert request.tags["ecosync/redis-state"] == "restarted"
    # The recovery records the run_id Redis runs under now, which ends the event.
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    after = tick(sensor, env, sensor_instance, result.cursor)
    assert after.run_requests == []


def test_sensor_sees_a_flush_that_happened_before_its_first_tick(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    sync_all(env)
    flush_redis(env)
    result = tick(sensor, env, sensor_instance, None)
    [request] = result.run_requests
    assert request.run_key.startswith("recover:flushed:")


def test_sensor_skips_quickly_and_keeps_its_cursor_when_redis_is_unreachable(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    down = ecosync_resources(replace(env.settings, redis_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    result = tick(sensor, env, sensor_instance, cursor, down)
    assert time.monotonic() - started < 10
    assert result.run_requests == []
    assert "unreachable" in (result.skip_message or "")
    # The loss fields are kept: the next reachable tick compares with what was seen.
    kept = ("generation", "last_event")
    assert {k: cursor_of(result)[k] for k in kept} == {k: json.loads(cursor)[k] for k in kept}
    # and the UI is told at once that Redis is down
    checks = evaluations(result)
    assert not checks["cache_health"].passed
    assert "unreachable" in (checks["position_health"].description or "")


def test_sensor_says_there_is_nothing_to_lose_before_any_position_is_written(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    result = tick(sensor, env, sensor_instance, None)
    assert result.run_requests == []
    assert "nothing to lose" in (result.skip_message or "")


def test_sensor_records_a_flush_as_failed_checks_at_once_and_their_end_after_a_restore(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    sync_all(env)
    first = tick(sensor, env, sensor_instance, None)
    assert all(c.passed for c in evaluations(first).values())
    assert observation(first)["stores_healthy"] == len(STORES)
    # Nothing changed: nothing recorded.
    quiet = tick(sensor, env, sensor_instance, first.cursor)
    assert quiet.asset_events == []
    flush_redis(env)
    lost = tick(sensor, env, sensor_instance, quiet.cursor)
    assert len(lost.run_requests) == 1
    seen = observation(lost)
    assert (seen["stores_missing"], seen["cache_health_percent"]) == (len(STORES), 0.0)
    assert seen["recommendation"].startswith("2 stores need their positions restored")
    checks = evaluations(lost)
    assert set(checks) == {"cache_health", "position_health", "layer_agreement"}
    assert not any(c.passed for c in checks.values()), checks
    assert tick(sensor, env, sensor_instance, lost.cursor).asset_events == []
    # Restored outside Dagster (`ecosync positions restore`, or a sync healing itself):
    # the next tick records the end of the loss.
    runtime = env.runtime()
    try:
        assert all(r.ok for r in runtime.chain.restore_all(runtime.client))
    finally:
        runtime.close()
    back = tick(sensor, env, sensor_instance, lost.cursor)
    assert all(c.passed for c in evaluations(back).values()), evaluations(back)
    assert observation(back)["stores_healthy"] == len(STORES)


def test_sensor_records_the_health_again_after_an_hour_without_change(
    sensor: SensorDefinition,
    env: Env,
    sensor_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync_all(env)
    first = tick(sensor, env, sensor_instance, None)
    assert observation(first)["stores_healthy"] == len(STORES)
    assert tick(sensor, env, sensor_instance, first.cursor).asset_events == []
    # An hour later (the refresh period shortened to nothing): recorded again, unchanged.
    monkeypatch.setattr(sensors, "HEALTH_REFRESH_SECONDS", 0)
    again = tick(sensor, env, sensor_instance, first.cursor)
    assert observation(again)["fingerprint"] == observation(first)["fingerprint"]


def test_sensor_records_nothing_new_after_a_recovery_that_recorded_the_health_itself(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    env.redis.delete("ecomanager:pageinfo:PURNA")
    lost = tick(sensor, env, sensor_instance, cursor)
    assert observation(lost)["stores_missing"] == 1
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    # The recovery recorded the health it left; the sensor has nothing to add.
    assert tick(sensor, env, sensor_instance, lost.cursor).asset_events == []
    latest = sensor_instance.get_latest_materialization_event(AssetKey("store_sync_positions"))
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["stores_healthy"].value == len(STORES)


# -- every loss its own event, even before an earlier recovery ran (issue 12, item 7) --------


def _write_one(env: Env, store: str) -> None:
    """A sync's checkpoint of one store: Redis (which recreates a lost sentinel) and backup."""
    runtime = env.runtime()
    try:
        position = runtime.chain.database.read(runtime.store(store))
        assert runtime.chain.save(position).redis
    finally:
        runtime.close()


def test_sensor_names_a_second_flush_anew_while_the_first_recovery_has_not_run(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    flush_redis(env)
    [first] = tick(sensor, env, sensor_instance, cursor).run_requests
    first_cursor = tick(sensor, env, sensor_instance, cursor).cursor
    # Before any recovery: a sync writes one store (a new sentinel), then Redis is
    # flushed again. The second flush lost what the first recovery would not restore.
    _write_one(env, "NATUR")
    flush_redis(env)
    second = tick(sensor, env, sensor_instance, first_cursor)
    [request] = second.run_requests
    assert request.run_key.startswith("recover:flushed:")
    assert request.run_key != first.run_key
    assert cursor_of(second)["last_event"] == request.run_key.removeprefix("recover:")


def test_sensor_names_a_sentinel_recreated_by_a_sync_after_an_unseen_flush(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    flush_redis(env)
    [first] = tick(sensor, env, sensor_instance, cursor).run_requests
    assert recover_sync_positions.execute_in_process(
        instance=sensor_instance, resources=env.resources
    ).success
    settled = tick(sensor, env, sensor_instance, cursor)
    # Flushed again, and a sync recreates the sentinel before the sensor looks: the
    # sentinel is new, the recovery's generation is gone, so it is a loss of its own.
    flush_redis(env)
    _write_one(env, "NATUR")
    result = tick(sensor, env, sensor_instance, settled.cursor)
    [request] = result.run_requests
    assert request.run_key not in (
        first.run_key,
        f"recover:flushed:{json.loads(cursor)['generation']}",
    )
    assert cursor_of(result)["generation"] == env.redis.hget(SENTINEL_KEY, "generation")


def test_sensor_never_calls_a_store_without_a_key_healthy(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    flush_redis(env)
    _write_one(env, "NATUR")  # the new sentinel lists NATUR only; PURNA has orders, no key
    recreated = tick(sensor, env, sensor_instance, cursor)
    assert len(recreated.run_requests) == 1
    # The next tick knows the new sentinel: PURNA is still without a key, so not healthy.
    result = tick(sensor, env, sensor_instance, recreated.cursor)
    [request] = result.run_requests
    assert request.run_key.startswith("recover:missing:")
    assert "healthy" not in (result.skip_message or "")
    assert env.redis.exists("ecomanager:pageinfo:PURNA") == 0


def test_sensor_names_a_second_reset_of_the_same_store_anew(
    sensor: SensorDefinition, env: Env, sensor_instance: DagsterInstance
) -> None:
    cursor = healthy_cursor(sensor, env, sensor_instance)
    reset_natur_to_page_one(env)
    [first] = tick(sensor, env, sensor_instance, cursor).run_requests
    time.sleep(0.01)  # the key's timestamp is in milliseconds
    # Reset again (the original system restarting at page 1), no recovery between.
    reset_natur_to_page_one(env)
    [second] = tick(sensor, env, sensor_instance, cursor).run_requests
    assert first.run_key.startswith("recover:reset:")
    assert second.run_key.startswith("recover:reset:") and second.run_key != first.run_key
