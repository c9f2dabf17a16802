"""store_freshness: cache_loss_sensor's tick WARNs naming each store that has not synced
for longer than the freshness window, against real Redis, PostgreSQL and a Dagster instance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    EventLogEntry,
    SensorDefinition,
    build_sensor_context,
    materialize,
)

from ecosync_pipeline.defs.freshness import build_freshness_check, freshness_result, last_synced
from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_FRESHNESS
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, metadata_values, sync_all

STALE, FRESH = STORES[0], STORES[1]


@pytest.fixture
def sensor_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent instance, as the daemon gives the sensor."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
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


def stale_and_fresh(instance: DagsterInstance) -> float:
    """STALE last synced 95 min ago, FRESH 5 min ago; returns now."""
    now = time.time()
    synced_at(instance, STALE, now - 95 * 60)
    synced_at(instance, FRESH, now - 5 * 60)
    return now


def tick(sensor: SensorDefinition, env: Env, instance: DagsterInstance, cursor: str | None) -> Any:
    """One tick; its asset events recorded in ``instance``, as the daemon records them."""
    with build_sensor_context(instance=instance, cursor=cursor, resources=env.resources) as ctx:
        result = sensor.evaluate_tick(ctx)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def checks(result: Any) -> dict[str, AssetCheckEvaluation]:
    return {e.check_name: e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}


def clock_at(now: float) -> Callable[[], float]:
    return lambda: now


def test_sensor_warns_naming_the_store_that_has_not_synced_and_no_other(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    sync_all(env)
    now = stale_and_fresh(sensor_instance)
    sensor = build_cache_loss_sensor(recover_sync_positions, clock=clock_at(now))
    first = tick(sensor, env, sensor_instance, None)
    found = checks(first)
    fresh = found[STORE_FRESHNESS]
    assert fresh.asset_key == NEW_ORDERS
    assert not fresh.passed and fresh.severity == AssetCheckSeverity.WARN
    advice = f"{STALE} has not synced for 95 min: check its last new_orders run."
    assert fresh.description is not None and advice in fresh.description, fresh.description
    assert f"{FRESH} has not synced" not in fresh.description
    seen = metadata_values(fresh.metadata)
    assert seen["stores_overdue"] == 1
    assert (seen[f"minutes_since_sync_{STALE}"], seen[f"minutes_since_sync_{FRESH}"]) == (95, 5)
    assert advice in seen["what_to_do"]
    # Positions are healthy: the position checks pass beside it (they judge other things).
    assert all(found[c].passed for c in ("cache_health", "position_health", "layer_agreement"))
    # Nothing changed: nothing recorded.
    assert checks(tick(sensor, env, sensor_instance, first.cursor)) == {}
    # The stale store syncs: the next tick records the check passing.
    synced_at(sensor_instance, STALE, now - 60)
    back = checks(tick(sensor, env, sensor_instance, first.cursor))[STORE_FRESHNESS]
    assert back.passed, back.description
    assert metadata_values(back.metadata)[f"minutes_since_sync_{STALE}"] == 1


def test_the_window_is_the_configured_one_and_the_check_is_rerecorded_hourly(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    now = stale_and_fresh(sensor_instance)
    lenient = build_cache_loss_sensor(
        recover_sync_positions, freshness_minutes=120, clock=clock_at(now)
    )
    first = checks(tick(lenient, env, sensor_instance, None))[STORE_FRESHNESS]
    assert first.passed, first.description

    # Two hours later, with nothing new synced: both stores are stale, named oldest first.
    def at(offset: float) -> Any:
        sensor = build_cache_loss_sensor(
            recover_sync_positions, freshness_minutes=120, clock=clock_at(now + offset)
        )
        return checks(tick(sensor, env, sensor_instance, None)).get(STORE_FRESHNESS)

    again = at(7200)
    assert not again.passed and again.description is not None
    assert again.description.index(STALE) < again.description.index(FRESH), again.description
    assert metadata_values(again.metadata)["stores_overdue"] == 2
    # The same stores stale: not recorded again within the hour, recorded again after it.
    assert at(7200 + 60) is None
    hourly = at(7200 + 3700)
    assert hourly is not None and metadata_values(hourly.metadata)["stores_overdue"] == 2


def test_a_store_never_synced_is_listed_and_does_not_fail_the_check(
    sensor_instance: DagsterInstance,
) -> None:
    now = time.time()
    synced_at(sensor_instance, FRESH, now - 10 * 60)
    synced = last_synced(sensor_instance, list(STORES))
    assert synced[STALE] is None and synced[FRESH] == pytest.approx(now - 600)
    result = freshness_result(synced, now, 60)
    assert result.passed, result.description
    assert metadata_values(result.metadata)["never_synced"] == STALE
    assert result.description is not None and f"never synced yet: {STALE}" in result.description


def test_the_check_run_from_the_ui_names_the_stale_store_as_the_sensor_does(
    env: Env, sensor_instance: DagsterInstance
) -> None:
    stale_and_fresh(sensor_instance)
    check = build_freshness_check(60)
    result = materialize(
        [check],
        instance=sensor_instance,
        resources=env.resources,
        selection=AssetSelection.checks(check),
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == STORE_FRESHNESS and not evaluation.passed
    assert evaluation.description is not None
    assert f"{STALE} has not synced for 95 min" in evaluation.description
    assert f"{FRESH} has not synced" not in evaluation.description
