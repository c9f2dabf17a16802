"""reconciled_orders and order_statuses per store partition, and their schedules."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, build_schedule_context, build_sensor_context, materialize

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.mirror.assets import build_order_statuses, build_reconciled_orders
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    flush_redis,
    metadata_values,
    sync_all,
)


def _materialize(env: Env, instance: DagsterInstance, asset: Any, store: str) -> Any:
    register_stores(instance, STORES)
    return materialize(
        [asset],
        partition_key=store,
        instance=instance,
        resources=env.resources,
        raise_on_error=False,
    )


def test_reconciled_orders_records_what_it_found_and_fixed_per_store(
    env: Env, instance: DagsterInstance
) -> None:
    partitions = store_partitions()
    assert _materialize(env, instance, build_new_orders(partitions), "NATUR").success
    gone = env.simulator.delete_random("NATUR", 4)
    result = _materialize(env, instance, build_reconciled_orders(partitions), "NATUR")
    assert result.success
    [event] = result.asset_materializations_for_node("reconciled_orders")
    assert event.partition == "NATUR"
    meta = metadata_values(event.metadata)
    assert meta["flagged_deleted"] == len(gone)
    assert (meta["missing"], meta["sweep_complete"]) == (0, 1)
    assert meta["api_calls"] == meta["pages"] == 1  # 95 orders: one page of 100
    statuses = _materialize(env, instance, build_order_statuses(partitions), "NATUR")
    assert statuses.success
    [event] = statuses.asset_materializations_for_node("order_statuses")
    meta = metadata_values(event.metadata)
    assert meta["open_after"] <= meta["open_before"]


def test_mirror_schedules_ask_for_one_run_per_batch_of_stores(env: Env, tmp_path: Path) -> None:
    defs = build_definitions(env.settings, resources=env.resources)
    # On disk: a schedule reaches the instance through its reference.
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        register_stores(instance, STORES)
        for name in ("reconcile_schedule", "status_refresh_schedule"):
            schedule = defs.resolve_schedule_def(name)
            with build_schedule_context(
                instance=instance,
                scheduled_execution_time=datetime(2026, 12, 1, 10, 7, tzinfo=timezone.utc),
                repository_def=defs.get_repository_def(),
                resources=env.resources,
            ) as context:
                requests = list(schedule.evaluate_tick(context).run_requests or [])
            assert len(requests) == 1, name
            tags = requests[0].tags
            assert tags["dagster/asset_partition_range_start"] == STORES[0]
            assert tags["dagster/asset_partition_range_end"] == STORES[-1]


def test_cache_loss_costs_cursor_stores_nothing_and_the_sensor_says_so(
    env: Env, tmp_path: Path
) -> None:
    stores_file = Path(env.settings.stores_file)
    config = yaml.safe_load(stores_file.read_text(encoding="utf-8"))
    for store in config["stores"]:
        store["read_mode"] = "cursor"
    stores_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    sync_all(env)
    flush_redis(env)
    (tmp_path / "sensor").mkdir()
    sensor = build_cache_loss_sensor(recover_sync_positions)
    with (
        DagsterInstance.local_temp(str(tmp_path / "sensor")) as instance,
        build_sensor_context(instance=instance, resources=env.resources) as context,
    ):
        result = sensor.evaluate_tick(context)
    assert not result.run_requests
    assert "cursor-mode stores NATUR, PURNA: no position, nothing to recover" in (
        result.skip_message or ""
    )
    runtime = env.runtime()
    try:
        for store in STORES:
            again = runtime.sync(store)
            assert (again.orders_new, again.api_calls) == (0, 1)
    finally:
        runtime.close()
