"""store_sync_positions, its checks, and restored_sync_positions (the restore button)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from ecosync_pipeline.defs.positions.assets import restored_sync_positions, store_sync_positions
from ecosync_pipeline.defs.positions.checks import position_checks
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    checks_by_name,
    flush_redis,
    metadata_values,
    sync_all,
)


def inspect_positions(env: Env, instance: DagsterInstance, resources: dict[str, Any] | None = None):  # noqa: ANN201
    """Materialize store_sync_positions with its checks; (metadata, checks by name)."""
    result = materialize(
        [store_sync_positions, position_checks],
        instance=instance,
        resources=resources or env.resources,
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("store_sync_positions")
    return metadata_values(materialization.metadata), checks_by_name(result)


def redis_position(env: Env, store: str) -> SyncPosition:
    runtime = env.runtime()
    try:
        position = runtime.chain.redis.read(store)
    finally:
        runtime.close()
    assert isinstance(position, SyncPosition)
    return position


def write_redis(env: Env, position: SyncPosition) -> None:
    runtime = env.runtime()
    try:
        assert runtime.chain.redis.write(position)
    finally:
        runtime.close()


def test_store_positions_show_each_store_with_page_id_source_and_age_and_all_checks_pass(
    env: Env, instance: DagsterInstance
) -> None:
    last_ids = sync_all(env)
    metadata, checks = inspect_positions(env, instance)
    assert metadata["cache_health_percent"] == 100.0
    assert metadata["redis_state"] == "ok"
    assert metadata["stores_healthy"] == len(STORES)
    assert metadata["stores_missing"] == 0
    assert metadata["stores_needing_attention"] == 0
    assert metadata["recommendation"] == f"All {len(STORES)} stores healthy: nothing to do."
    rows = {r.data["store"]: r.data for r in metadata["stores"].records}
    assert set(rows) == set(STORES)
    for store, row in rows.items():
        assert row["status"] == "healthy"
        assert row["last_id"] == row["db_last_id"] == last_ids[store]
        assert row["page"] == row["backup_page"] == env.simulator.page_of(store, last_ids[store])
        assert row["source"] == "redis"
        assert row["age"].endswith(" s")
    assert all(check.passed for check in checks.values()), checks


def test_a_store_missing_from_redis_fails_every_check_that_judges_it(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    env.redis.delete("ecomanager:pageinfo:NATUR")
    metadata, checks = inspect_positions(env, instance)
    assert metadata["cache_health_percent"] == 50.0
    assert (metadata["stores_missing"], metadata["stores_healthy"]) == (1, 1)
    assert metadata["recommendation"].startswith(
        "1 store needs its position restored (NATUR): Materialize restored_sync_positions"
    )
    cache = checks["cache_health"]
    assert not cache.passed
    assert cache.severity == AssetCheckSeverity.WARN
    assert "restored_sync_positions" in cache.metadata["what_to_do"].value
    # The backup still holds NATUR's position, but Redis does not: not healthy anywhere.
    health = checks["position_health"]
    assert not health.passed
    assert health.severity == AssetCheckSeverity.ERROR
    assert "NATUR (missing)" in (health.description or "")
    assert "PURNA" not in (health.description or "").split(".")[0]
    assert not checks["layer_agreement"].passed


@pytest.mark.parametrize(
    ("status", "severity"),
    [
        ("reset", AssetCheckSeverity.ERROR),
        ("ahead", AssetCheckSeverity.ERROR),
        ("stale", AssetCheckSeverity.WARN),
    ],
)
def test_position_health_fails_with_severity_for_a_bad_redis_position(
    env: Env, instance: DagsterInstance, status: str, severity: AssetCheckSeverity
) -> None:
    last_ids = sync_all(env)
    good = redis_position(env, "PURNA")
    if status == "reset":
        bad = SyncPosition.first_sync("PURNA", good.store_name)
    else:
        target = last_ids["PURNA"] + (700 if status == "ahead" else -70)
        bad = replace(good, last_order_id=target, last_id=target)
    write_redis(env, bad)
    metadata, checks = inspect_positions(env, instance)
    health = checks["position_health"]
    assert not health.passed
    assert health.severity == severity
    assert f"PURNA ({status})" in (health.description or "")
    assert "NATUR" not in (health.description or "")
    assert metadata[f"stores_{status}"] == 1


def test_position_health_errors_when_no_cache_holds_a_store_position(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    env.redis.delete("ecomanager:pageinfo:NATUR")
    Path(env.settings.backup_path).unlink()
    _, checks = inspect_positions(env, instance)
    health = checks["position_health"]
    assert not health.passed
    assert health.severity == AssetCheckSeverity.ERROR
    assert "NATUR (missing)" in (health.description or "")
    assert "restored_sync_positions" in health.metadata["what_to_do"].value


def test_position_health_passes_for_stores_without_orders_and_says_a_first_sync_is_due(
    env: Env, instance: DagsterInstance
) -> None:
    metadata, checks = inspect_positions(env, instance)
    health = checks["position_health"]
    assert health.passed
    assert "2 without orders yet" in (health.description or "")
    assert checks["cache_health"].passed
    assert metadata["stores_calculated"] == len(STORES)
    assert "new_orders partitions" in metadata["recommendation"]


def test_layer_agreement_fails_when_redis_and_backup_name_different_pages(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    good = redis_position(env, "NATUR")
    write_redis(env, replace(good, last_page=good.last_page + 3))
    _, checks = inspect_positions(env, instance)
    agreement = checks["layer_agreement"]
    assert not agreement.passed
    assert agreement.severity == AssetCheckSeverity.WARN
    rows = {r.data["store"]: r.data for r in agreement.metadata["stores"].records}
    assert rows["NATUR"]["agree"] is False
    assert rows["PURNA"]["agree"] is True
    assert checks["position_health"].passed


def test_store_positions_report_unreachable_redis_and_checks_say_so(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    unreachable = ecosync_resources(replace(env.settings, redis_url="redis://127.0.0.1:1/0"))
    metadata, checks = inspect_positions(env, instance, unreachable)
    assert metadata["redis_state"] == "unreachable"
    assert metadata["cache_health_percent"] == 0.0
    assert metadata["stores_unreachable"] == len(STORES)
    assert metadata["recommendation"].startswith("Redis is unreachable")
    assert not checks["cache_health"].passed
    assert "unreachable" in (checks["layer_agreement"].description or "")
    health = checks["position_health"]
    assert not health.passed
    assert health.severity == AssetCheckSeverity.WARN
    assert "NATUR (unreachable)" in (health.description or "")


def test_restore_button_restores_a_flushed_redis_from_the_backup(
    env: Env, instance: DagsterInstance
) -> None:
    last_ids = sync_all(env)
    flush_redis(env)
    result = materialize([restored_sync_positions], instance=instance, resources=env.resources)
    assert result.success
    [materialization] = [
        m
        for m in result.asset_materializations_for_node("restored_sync_positions")
        if m.asset_key.path == ["restored_sync_positions"]
    ]
    metadata = metadata_values(materialization.metadata)
    assert metadata["from_json"] == len(STORES)
    assert metadata["failed"] == 0
    rows = {r.data["store"]: r.data for r in metadata["positions"].records}
    for store in STORES:
        assert rows[store]["redis_before"] == "none"
        assert rows[store]["restored_from"] == "json"
        assert rows[store]["result"] == "restored"
        assert rows[store]["last_order_id"] == last_ids[store]
        assert redis_position(env, store).last_order_id == last_ids[store]
    # The restore records the positions as it left them: healthy, every check passed.
    health = [
        m
        for m in result.asset_materializations_for_node("restored_sync_positions")
        if m.asset_key.path == ["store_sync_positions"]
    ]
    assert [metadata_values(m.metadata)["stores_healthy"] for m in health] == [len(STORES)]
    checks = checks_by_name(result)
    assert set(checks) == {"cache_health", "position_health", "layer_agreement"}
    assert all(check.passed for check in checks.values()), checks


def test_restore_button_fails_naming_the_store_it_could_not_restore_after_the_others(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    last_ids = sync_all(env)
    flush_redis(env)
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_PURNA")
    result = materialize(
        [restored_sync_positions],
        instance=instance,
        resources=env.resources,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description
    assert "store PURNA" in description
    assert "ECOSYNC_TEST_TOKEN_PURNA" in description
    assert "store NATUR" not in description
    assert redis_position(env, "NATUR").last_order_id == last_ids["NATUR"]
    assert env.redis.get("ecomanager:pageinfo:PURNA") is None
