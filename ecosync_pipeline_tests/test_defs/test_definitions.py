"""The code location loads, validates and resolves; the instance configs load."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
    FreshnessPolicy,
)

import ecosync_pipeline.definitions as definitions_module
from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_definitions_resolve_every_job_asset_check_schedule_and_sensor(env: Env) -> None:
    defs = build_definitions(env.settings, resources=env.resources)
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {
        "sync_orders",
        "recover_sync_positions",
        "reconcile_orders",
        "refresh_order_statuses",
    } <= jobs
    for name in jobs:
        assert defs.resolve_job_def(name).name == name
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {
        "store_sync_positions",
        "restored_sync_positions",
        "new_orders",
        "webhook_events",
        "reconciled_orders",
        "order_statuses",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("store_sync_positions", "cache_health"),
        ("store_sync_positions", "position_health"),
        ("store_sync_positions", "layer_agreement"),
        ("new_orders", "new_orders_complete"),
        ("new_orders", "store_freshness"),
        ("webhook_events", "webhook_deliveries_flowing"),
    }
    assert sorted(s.name for s in repo.schedule_defs) == [
        "order_sync_schedule",
        "reconcile_schedule",
        "status_refresh_schedule",
    ]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "alerts_sensor",
        "cache_loss_sensor",
        "recovery_failure_alert",
        "store_partitions_sensor",
        "webhook_inbox_sensor",
    ]


def test_new_orders_partitions_are_the_stores_the_instance_holds_in_file_order(
    env: Env, tmp_path: Path
) -> None:
    defs = build_definitions(env.settings, resources=env.resources)
    job = defs.resolve_job_def("sync_orders")
    assert isinstance(job.partitions_def, DynamicPartitionsDefinition)
    with DagsterInstance.ephemeral() as instance:
        assert register_stores(instance, [s.identifier for s in env.settings.stores()]) == list(
            STORES
        )
        assert job.partitions_def.get_partition_keys(dynamic_partitions_store=instance) == list(
            STORES
        )
        assert register_stores(instance, STORES) == []


def test_lineage_runs_from_store_positions_through_restore_to_new_orders(env: Env) -> None:
    graph = build_definitions(env.settings, resources=env.resources).resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents == {
        "store_sync_positions": set(),
        "restored_sync_positions": {"store_sync_positions"},
        "new_orders": {"restored_sync_positions"},
        "webhook_events": set(),
        "reconciled_orders": {"new_orders"},
        "order_statuses": {"new_orders"},
    }


def test_code_location_refuses_to_load_when_stores_file_is_missing(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_STORES_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="absent.yaml"):
        definitions_module.defs()


def test_code_location_refuses_a_bad_sensor_interval(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_SENSOR_INTERVAL_SECONDS", "soon")
    with pytest.raises(ConfigError, match="ECOSYNC_SENSOR_INTERVAL_SECONDS"):
        definitions_module.defs()


def test_code_location_takes_cron_and_interval_from_environment(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_SYNC_CRON", "*/5 * * * *")
    monkeypatch.setenv("ECOSYNC_SENSOR_INTERVAL_SECONDS", "45")
    repo = definitions_module.defs().get_repository_def()
    assert repo.get_schedule_def("order_sync_schedule").cron_schedule == "*/5 * * * *"
    assert repo.get_sensor_def("cache_loss_sensor").minimum_interval_seconds == 45


def test_dagster_cli_validates_the_code_location_and_import_reads_no_environment(
    env: Env, tmp_path: Path
) -> None:
    # The validation loads the code location with the test settings...
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data" / "dagster.yaml", home / "dagster.yaml")
    validate = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "ecosync_pipeline.definitions"],
        cwd=tmp_path,  # not the project root: a .env there must not leak in
        env=env.subprocess_env(DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "Validation successful" in validate.stdout + validate.stderr
    # ...while importing the module with a broken environment still works: nothing is
    # read until Dagster asks for the definitions.
    imported = subprocess.run(
        [sys.executable, "-c", "import ecosync_pipeline.definitions"],
        cwd=tmp_path,  # not the project root: a .env there must not leak in
        env=env.subprocess_env(ECOSYNC_STORES_FILE=str(tmp_path / "absent.yaml")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr


def test_local_instance_config_queues_runs_one_per_store(tmp_path: Path) -> None:
    shutil.copy(ROOT / "data" / "dagster.yaml", tmp_path / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(tmp_path))
        instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs == 4
        assert {
            "key": "dagster/partition",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in queue.tag_concurrency_limits
        assert not instance.telemetry_enabled
    finally:
        instance.dispose()


def test_every_asset_has_owners_and_a_code_reference_and_new_orders_a_freshness_policy(
    env: Env,
) -> None:
    defs = build_definitions(env.settings, resources=env.resources, freshness_minutes=45)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:back-office"], key
        if not node.is_materializable:
            continue  # webhook_events: recorded by the receiver, no code of its own here
        [reference] = node.metadata["dagster/code_references"].code_references
        assert Path(reference.file_path).is_file(), (key, reference)
        assert reference.line_number >= 1
    positions = graph.get(AssetKey("store_sync_positions")).metadata["dagster/code_references"]
    assert positions.code_references[0].file_path.endswith("defs/positions/assets.py")
    assert graph.get(AssetKey("new_orders")).freshness_policy == FreshnessPolicy.time_window(
        warn_window=timedelta(minutes=45), fail_window=timedelta(minutes=180)
    )
    assert graph.get(AssetKey("store_sync_positions")).freshness_policy is None


def test_code_references_link_to_the_repository_when_its_url_is_given(env: Env) -> None:
    url = "https://github.com/example/ecosync"
    defs = build_definitions(env.settings, resources=env.resources, git_url=url)
    node = defs.resolve_asset_graph().get(AssetKey("restored_sync_positions"))
    [reference] = node.metadata["dagster/code_references"].code_references
    assert reference.url.startswith(
        "https://github.com/example/ecosync/tree/main/ecosync_pipeline/defs/positions/assets.py"
    ), reference.url
