"""recover_sync_positions, run in process: from each layer, and with a store it cannot save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance

from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    checks_by_name,
    flush_redis,
    sync_all,
)

STEPS = [
    "detect_cache_loss",
    "load_json_backup",
    "calculate_from_database",
    "verify_positions",
    "write_positions",
]


def recover(env: Env, instance: DagsterInstance) -> Any:
    return recover_sync_positions.execute_in_process(
        instance=instance, resources=env.resources, raise_on_error=False
    )


def counts(result: Any) -> dict[str, Any]:
    """The write step's output metadata (how many stores came from each layer)."""
    [event] = [
        e
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "write_positions"
    ]
    return {k: getattr(v, "value", v) for k, v in event.event_specific_data.metadata.items()}


def redis_positions(env: Env) -> dict[str, SyncPosition]:
    runtime = env.runtime()
    try:
        snapshot = runtime.chain.redis.snapshot(STORES)
    finally:
        runtime.close()
    return dict(snapshot.positions)


def test_recovery_job_runs_its_five_steps_in_order_and_finds_healthy_stores(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    result = recover(env, instance)
    assert result.success
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert started[0] == "detect_cache_loss"
    assert started[-2:] == ["verify_positions", "write_positions"]
    assert sorted(started) == sorted(STEPS)
    metadata = counts(result)
    assert metadata["already_healthy"] == len(STORES)
    assert metadata["from_redis"] == len(STORES)
    assert metadata["failed"] == 0
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags["ecosync/recovery"] == "true"


def test_recovery_job_restores_a_flushed_redis_from_the_json_backup(
    env: Env, instance: DagsterInstance
) -> None:
    last_ids = sync_all(env)
    flush_redis(env)
    result = recover(env, instance)
    assert result.success
    detected = result.output_for_node("detect_cache_loss")
    assert detected.loss.redis_state == "flushed"
    metadata = counts(result)
    assert metadata["from_json"] == len(STORES)
    assert metadata["already_healthy"] == 0
    restored = redis_positions(env)
    assert {s: p.last_order_id for s, p in restored.items()} == last_ids
    # The run shows in the UI as events of both positions assets: the restore, and the
    # health it left (an observation and the three checks, all passing).
    keys = {key.to_user_string() for key in instance.get_asset_keys()}
    assert {"store_sync_positions", "restored_sync_positions"} <= keys
    materialized = instance.get_latest_materialization_event(AssetKey("restored_sync_positions"))
    assert materialized is not None and materialized.run_id == result.run_id
    [health] = [
        m
        for m in result.asset_materializations_for_node("write_positions")
        if m.asset_key.path == ["store_sync_positions"]
    ]
    assert health.metadata["stores_healthy"].value == len(STORES)
    checks = checks_by_name(result)
    assert set(checks) == {"cache_health", "position_health", "layer_agreement"}
    assert all(check.passed for check in checks.values()), checks


def test_recovery_job_recomputes_from_the_database_when_backup_is_gone_too(
    env: Env, instance: DagsterInstance
) -> None:
    last_ids = sync_all(env)
    flush_redis(env)
    Path(env.settings.backup_path).unlink()
    result = recover(env, instance)
    assert result.success
    assert counts(result)["from_database"] == len(STORES)
    positions = redis_positions(env)
    assert set(positions) == set(STORES)
    for store, position in positions.items():
        assert position.last_order_id == last_ids[store]
        # Located and verified on the API, not estimated from the id.
        assert position.last_page == env.simulator.page_of(store, last_ids[store])
    assert Path(env.settings.backup_path).exists()


def test_recovery_job_fails_naming_the_unrecoverable_store_after_writing_the_others(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    last_ids = sync_all(env)
    flush_redis(env)
    Path(env.settings.backup_path).unlink()
    monkeypatch.setenv("ECOSYNC_TEST_TOKEN_PURNA", "x" * 80)  # refused by EcoManager
    result = recover(env, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "write_positions"
    description = failure.step_failure_data.user_failure_data.description
    assert "store PURNA" in description
    assert "ApiAuthError" in description
    assert "ECOSYNC_TEST_TOKEN_PURNA" in description
    assert "store NATUR" not in description
    restored = redis_positions(env)
    assert set(restored) == {"NATUR"}
    assert restored["NATUR"].last_order_id == last_ids["NATUR"]
