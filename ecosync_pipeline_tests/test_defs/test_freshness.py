"""store_freshness, per store: evaluated in every sync run for each of its stores, and by
store_partitions_sensor once for a store that crosses the window without a run; against
real Redis, PostgreSQL, the simulator and a Dagster instance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterInstance,
    EventLogEntry,
    build_sensor_context,
    materialize,
)

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_FRESHNESS
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.orders.sensors import build_store_partitions_sensor
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, metadata_values

STALE, FRESH = STORES[0], STORES[1]


@pytest.fixture
def sensor_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent instance holding the store partitions, as the daemon gives the sensor."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        register_stores(instance, STORES)
        yield instance


def synced_at(instance: DagsterInstance, store: str, timestamp: float) -> None:
    """Record a new_orders materialization of ``store``'s partition made at ``timestamp``.

    Dagster stamps a reported event with the time it is reported: the event is reported
    now, then stored again with the time wanted (the latest record is the one judged).
    """
    instance.report_runless_asset_event(AssetMaterialization(NEW_ORDERS, partition=store))
    [record] = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=NEW_ORDERS, asset_partitions=[store]), limit=1
    ).records
    entry = record.event_log_entry
    instance.store_event(
        EventLogEntry(
            error_info=None,
            level=entry.level,
            user_message="",
            run_id=entry.run_id,
            timestamp=timestamp,
            dagster_event=entry.dagster_event,
        )
    )


def latest_record(instance: DagsterInstance, store: str) -> Any:
    [record] = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=NEW_ORDERS, asset_partitions=[store]), limit=1
    ).records
    return record


def tick(
    env: Env, instance: DagsterInstance, at: float, cursor: str | None, minutes: int = 60
) -> Any:
    """One tick of store_partitions_sensor at ``at``; its events recorded, as the daemon does."""
    sensor = build_store_partitions_sensor(freshness_minutes=minutes, clock=lambda: at)
    with build_sensor_context(instance=instance, cursor=cursor, resources=env.resources) as ctx:
        result = sensor.evaluate_tick(ctx)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def stale_results(result: Any) -> dict[str, AssetCheckEvaluation]:
    return {
        e.partition: e
        for e in result.asset_events
        if isinstance(e, AssetCheckEvaluation) and e.check_name == STORE_FRESHNESS
    }


def test_sensor_records_a_store_once_when_it_crosses_the_window_naming_its_last_sync(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    now = time.time()
    synced_at(sensor_instance, STALE, now - 95 * 60)
    synced_at(sensor_instance, FRESH, now - 5 * 60)
    first = tick(env, sensor_instance, now, None)
    assert set(stale_results(first)) == {STALE}
    warning = stale_results(first)[STALE]
    assert not warning.passed and warning.severity == AssetCheckSeverity.WARN
    since = datetime.fromtimestamp(now - 95 * 60, timezone.utc)
    assert warning.description is not None
    assert f"store {STALE}: not synced since {since:%Y-%m-%d %H:%M:%S} UTC" in warning.description
    assert f"ecosync/store.{STALE}=1" in warning.description
    assert metadata_values(warning.metadata)["minutes_since_sync"] == 95
    # The result judges the store's last sync: the UI shows it against that materialization.
    target = warning.target_materialization_data
    assert target is not None
    assert target.storage_id == latest_record(sensor_instance, STALE).storage_id
    assert "store_freshness recorded as WARN: NATUR" in (first.skip_message or "")
    # The next ticks record nothing new until FRESH crosses the window 55 min later.
    assert stale_results(tick(env, sensor_instance, now + 30, first.cursor)) == {}
    later = tick(env, sensor_instance, now + 56 * 60, first.cursor)
    assert set(stale_results(later)) == {FRESH}


def test_the_window_is_the_configured_one_and_a_store_never_synced_gets_no_result(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    now = time.time()
    synced_at(sensor_instance, FRESH, now - 95 * 60)
    # STALE never synced: no sync to judge, no result (its partition has none either).
    assert stale_results(tick(env, sensor_instance, now, None, minutes=120)) == {}
    assert set(stale_results(tick(env, sensor_instance, now + 30 * 60, None, minutes=120))) == {
        FRESH
    }


def test_a_sync_run_evaluates_each_stores_freshness_passing_against_its_own_sync(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    defs = build_definitions(env.settings, resources=env.resources, freshness_minutes=45)
    result = defs.resolve_job_def("sync_orders").execute_in_process(
        instance=sensor_instance,
        tags={
            "dagster/asset_partition_range_start": STORES[0],
            "dagster/asset_partition_range_end": STORES[-1],
        },
    )
    assert result.success
    fresh = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == STORE_FRESHNESS
    }
    assert set(fresh) == set(STORES)
    for store, evaluation in fresh.items():
        assert evaluation.passed, evaluation.description
        assert evaluation.description is not None
        assert f"store {store}: synced at " in evaluation.description
        assert "within 45 min" in evaluation.description
        target = evaluation.target_materialization_data
        assert target is not None
        assert target.storage_id == latest_record(sensor_instance, store).storage_id
        assert target.run_id == result.run_id


def test_a_store_whose_sync_fails_is_judged_on_its_previous_sync_in_the_failing_run(
    env: Env, sensor_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_at(sensor_instance, STALE, time.time() - 95 * 60)
    monkeypatch.setenv(f"ECOSYNC_TEST_TOKEN_{STALE}", "x" * 80)
    result = materialize(
        [build_new_orders(store_partitions())],
        partition_key=STALE,
        instance=sensor_instance,
        resources=env.resources,
        raise_on_error=False,
    )
    assert not result.success
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == STORE_FRESHNESS
    ]
    assert evaluation.partition == STALE and not evaluation.passed
    assert evaluation.description is not None and "not synced since" in evaluation.description
