"""Every run that syncs, reconciles, refreshes or recovers a store carries the tag
ecosync/store.<STORE>=1, one per store, however it was launched: one filter on the Runs
page (an exact key=value match, as the instance's RunsFilter does) finds them all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter, build_schedule_context, materialize

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from ecosync_pipeline.defs.mirror.assets import build_order_statuses, build_reconciled_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions, tagged_stores
from ecosync_pipeline.defs.positions.assets import restored_sync_positions
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, flush_redis, sync_all

RANGE = {PARTITION_RANGE_START_TAG: STORES[0], PARTITION_RANGE_END_TAG: STORES[-1]}


@pytest.fixture
def disk_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """An instance on disk (schedules reach it through its reference), with the stores."""
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        register_stores(instance, STORES)
        yield instance


def runs_of(instance: DagsterInstance, store: str) -> list[str]:
    return [r.run_id for r in instance.get_runs(RunsFilter(tags={f"ecosync/store.{store}": "1"}))]


def test_a_range_run_of_the_mirror_is_found_by_each_of_its_stores(
    env: Env, disk_instance: DagsterInstance
) -> None:
    sync_all(env)
    partitions = store_partitions()
    for asset in (build_reconciled_orders(partitions), build_order_statuses(partitions)):
        # A backfill from the UI: a range, launched without the store tags.
        result = materialize([asset], instance=disk_instance, resources=env.resources, tags=RANGE)
        assert result.success
        for store in STORES:
            assert result.run_id in runs_of(disk_instance, store), (asset.key, store)


def test_the_mirror_schedules_tag_each_run_with_its_stores(
    env: Env, disk_instance: DagsterInstance
) -> None:
    defs = build_definitions(env.settings, resources=env.resources)
    for name in ("reconcile_schedule", "status_refresh_schedule"):
        with build_schedule_context(
            instance=disk_instance,
            scheduled_execution_time=datetime(2026, 12, 1, 10, 7, tzinfo=timezone.utc),
            repository_def=defs.get_repository_def(),
            resources=env.resources,
        ) as context:
            [request] = defs.resolve_schedule_def(name).evaluate_tick(context).run_requests or []
        assert tagged_stores(request.tags) == list(STORES), name


def test_a_recovery_and_a_restore_are_found_by_the_stores_they_restored(
    env: Env, disk_instance: DagsterInstance
) -> None:
    sync_all(env)
    flush_redis(env)
    recovery = recover_sync_positions.execute_in_process(
        instance=disk_instance, resources=env.resources
    )
    assert recovery.success
    for store in STORES:
        assert recovery.run_id in runs_of(disk_instance, store), store
    # Nothing lost since: a restore that restored nothing names no store.
    restore = materialize(
        [restored_sync_positions], instance=disk_instance, resources=env.resources
    )
    assert restore.success
    run = disk_instance.get_run_by_id(restore.run_id)
    assert run is not None and tagged_stores(run.tags) == []
    flush_redis(env)
    again = materialize([restored_sync_positions], instance=disk_instance, resources=env.resources)
    assert again.success
    for store in STORES:
        assert again.run_id in runs_of(disk_instance, store), store
