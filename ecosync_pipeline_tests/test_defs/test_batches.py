"""Many stores per run: partition ranges, one store failing alone, the schedule's batches,
and stores that come and go without reloading the code location."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterInstance,
    DeleteDynamicPartitionsRequest,
    build_schedule_context,
    build_sensor_context,
)

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import (
    NEW_ORDERS,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    STORE_PARTITIONS_NAME,
)
from ecosync_pipeline.defs.orders import assets as orders_assets
from ecosync_pipeline.defs.partitions import StoreBatch, register_stores, store_batches
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.storage import store_lock, store_summary
from ecosync_pipeline_tests.test_defs.conftest import (
    SPECS,
    STORES,
    Env,
    metadata_values,
    write_stores_file,
)

TICK = datetime(2026, 11, 25, 12, 15, tzinfo=timezone.utc)
NEWCOMER = StoreSpec(
    "DILST", name="Dilstore", first_id=1, count=41, token_env="ECOSYNC_TEST_TOKEN_DILST"
)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance on disk: schedules reach the instance through its reference,
    which an ephemeral instance does not have."""
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as inst:
        yield inst


def run_range(env: Env, instance: DagsterInstance, first: str, last: str) -> Any:
    defs = build_definitions(env.settings, resources=env.resources)
    register_stores(instance, STORES)
    return defs.resolve_job_def("sync_orders").execute_in_process(
        instance=instance,
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )


def materialized(result: Any) -> dict[str, dict[str, Any]]:
    return {
        m.partition: metadata_values(m.metadata)
        for m in result.asset_materializations_for_node("new_orders")
    }


def tick(env: Env, instance: DagsterInstance, batch_size: int) -> list[Any]:
    defs = build_definitions(env.settings, resources=env.resources, batch_size=batch_size)
    schedule = defs.resolve_schedule_def("order_sync_schedule")
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=TICK,
        repository_def=defs.get_repository_def(),
        resources=env.resources,
    ) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_store_batches_cut_at_removed_stores_and_at_the_batch_size() -> None:
    keys = ["A", "B", "C", "GONE", "D", "E"]
    batches = store_batches(keys, ["E", "D", "C", "B", "A"], 2)
    assert batches == [
        StoreBatch(("A", "B")),
        StoreBatch(("C",)),
        StoreBatch(("D", "E")),
    ]
    with pytest.raises(ValueError, match="at least 1"):
        store_batches(keys, keys, 0)


@pytest.mark.parametrize(
    ("stores", "size", "runs", "expected"),
    [
        (100, 500, 2, [50, 50]),  # one run per core
        (1000, 500, 2, [500, 500]),
        (1000, 250, 2, [250] * 4),  # never more than the batch size
        (5, 500, 2, [5]),  # too few stores to be worth a second process start
        (40, 500, 2, [25, 15]),
        (101, 500, 4, [26, 26, 26, 23]),
        (100, 500, 1, [100]),
    ],
)
def test_a_tick_is_split_across_the_runs_asked_for_when_each_gets_enough_stores(
    stores: int, size: int, runs: int, expected: list[int]
) -> None:
    keys = [f"S{i:04d}" for i in range(stores)]
    batches = store_batches(keys, keys, size, runs)
    assert [len(b.stores) for b in batches] == expected
    assert [k for b in batches for k in b.stores] == keys


def test_a_range_run_records_each_store_with_its_own_metadata_and_check(
    env: Env, instance: DagsterInstance
) -> None:
    result = run_range(env, instance, "NATUR", "PURNA")
    assert result.success
    by_store = materialized(result)
    assert set(by_store) == set(STORES)
    for store in STORES:
        assert by_store[store]["store"] == store
        assert by_store[store]["orders_new"] == env.simulator.count(store)
        # The store's shared rate budget after its sync, in one entry, after the figures:
        # what it used is counted in Redis.
        budget = by_store[store]["rate_budget"]
        assert list(by_store[store])[-1] == "rate_budget"
        assert not [k for k in by_store[store] if k.startswith("rate_budget_")]
        assert "counted in Redis, shared by every process" in budget
        day = re.search(r"day ([\d,]+)/([\d,]+);", budget)
        assert day is not None, budget
        used, limit = (int(n.replace(",", "")) for n in day.groups())
        assert used >= by_store[store]["api_calls"]
        assert f"{limit - used:,} left today" in budget
        # The store's own count, not a row count Dagster would show as the table's.
        assert by_store[store]["orders_in_database"] == env.simulator.count(store)
        assert "dagster/row_count" not in by_store[store]
    evaluations = result.get_asset_check_evaluations()
    # Both checks of every store, evaluated in the run that synced it.
    assert sorted((e.check_name, e.partition) for e in evaluations) == sorted(
        (name, store) for name in ("new_orders_complete", "store_freshness") for store in STORES
    )
    assert all(e.passed for e in evaluations)
    checks = {e.partition: e for e in evaluations if e.check_name == "new_orders_complete"}
    assert {c.metadata["orders_in_database"].value for c in checks.values()} == {
        env.simulator.count(s) for s in STORES
    }
    # Each check judges its own store's materialization of this run.
    for evaluation in evaluations:
        target = evaluation.target_materialization_data
        assert target is not None and target.run_id == result.run_id, evaluation.partition
    # No step skipped, no check output reported missing: the run is clean.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_SKIPPED"]
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert [m for m in logged if "Finished execution of step" in m]  # the run's log, read
    assert not [m for m in logged if "did not yield or return expected outputs" in m]


def test_a_range_given_backwards_fails_saying_the_order_of_the_stores(
    env: Env, instance: DagsterInstance
) -> None:
    result = run_range(env, instance, "PURNA", "NATUR")
    assert not result.success
    assert materialized(result) == {}
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = str(failure.step_failure_data.user_failure_data.description)
    assert description == (
        "the partition range PURNA...NATUR holds no store, so nothing was synced: a range "
        "runs from its first store to its last in the order the stores file lists them "
        "(NATUR, PURNA). Give the range in that order, e.g. NATUR...PURNA for every store."
    )


def test_check_results_recorded_while_the_batch_runs_judge_each_stores_own_materialization(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Results recorded store by store as the batch goes, not all at its end.
    monkeypatch.setattr(orders_assets, "CHECKS_AT_ONCE", 1)
    result = run_range(env, instance, "NATUR", "PURNA")
    assert result.success
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("new_orders")), limit=10
    ).records
    materialization_ids = {
        r.partition_key: r.storage_id for r in records if r.run_id == result.run_id
    }
    checks = {e.partition: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(materialization_ids) == set(STORES)
    for store, evaluation in checks.items():
        target = evaluation.target_materialization_data
        assert target is not None and target.storage_id == materialization_ids[store], store


def test_one_store_failing_fails_only_that_store_and_names_it(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_TEST_TOKEN_NATUR", "x" * 80)
    result = run_range(env, instance, "NATUR", "PURNA")
    assert not result.success
    assert set(materialized(result)) == {"PURNA"}
    assert store_summary(env.runtime().engine, "PURNA").order_count == env.simulator.count("PURNA")
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = str(failure.step_failure_data.user_failure_data.description)
    assert description.startswith("1 of 2 stores failed")
    assert "store NATUR" in description and "ECOSYNC_TEST_TOKEN_NATUR" in description


def test_schedule_batches_the_stores_and_a_rerun_tick_has_the_same_run_keys(
    env: Env, instance: DagsterInstance
) -> None:
    [batch] = tick(env, instance, batch_size=2)
    assert batch.partition_key is None
    assert batch.tags[PARTITION_RANGE_START_TAG] == "NATUR"
    assert batch.tags[PARTITION_RANGE_END_TAG] == "PURNA"
    # A run of many stores carries a tag per store: one filter finds each store's runs.
    assert {k: v for k, v in batch.tags.items() if k.startswith("ecosync/store")} == {
        "ecosync/store.NATUR": "1",
        "ecosync/store.PURNA": "1",
    }
    singles = tick(env, instance, batch_size=1)
    assert [r.partition_key for r in singles] == list(STORES)
    assert [r.tags["ecosync/store"] for r in singles] == list(STORES)
    assert [r.run_key for r in tick(env, instance, 1)] == [r.run_key for r in singles]


def test_a_store_added_to_the_file_is_synced_by_the_next_tick_and_a_removed_one_kept(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(tick(env, instance, batch_size=10)) == 1
    env.simulator.configure((*SPECS, NEWCOMER))
    monkeypatch.setenv(NEWCOMER.token_env, env.simulator.token("DILST"))
    # NATUR leaves the file, DILST joins it: no new Definitions, only the next tick.
    write_stores_file(Path(env.settings.stores_file), env.simulator, (SPECS[1], NEWCOMER))
    defs = build_definitions(env.settings, resources=env.resources, batch_size=10)
    [request] = tick(env, instance, batch_size=10)
    assert request.tags[PARTITION_RANGE_START_TAG] == "PURNA"
    assert request.tags[PARTITION_RANGE_END_TAG] == "DILST"
    assert instance.get_dynamic_partitions(STORE_PARTITIONS_NAME) == ["NATUR", "PURNA", "DILST"]
    result = defs.resolve_job_def("sync_orders").execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config
    )
    assert result.success
    assert set(materialized(result)) == {"PURNA", "DILST"}
    assert store_summary(env.runtime().engine, "DILST").order_count == 41


def test_partitions_sensor_adds_new_stores_keeps_removed_ones_and_deletes_invented_ones(
    env: Env, instance: DagsterInstance
) -> None:
    defs = build_definitions(env.settings, resources=env.resources)
    sensor = defs.resolve_sensor_def("store_partitions_sensor")

    def evaluate(cursor: str | None = None) -> Any:
        with build_sensor_context(
            instance=instance,
            cursor=cursor,
            repository_def=defs.get_repository_def(),
            resources=env.resources,
        ) as context:
            return sensor.evaluate_tick(context)

    first = evaluate()
    [request] = first.dynamic_partitions_requests
    assert isinstance(request, AddDynamicPartitionsRequest)
    assert request.partitions_def_name == STORE_PARTITIONS_NAME
    assert list(request.partition_keys) == list(STORES)
    assert first.run_requests == []
    assert first.skip_message == "added the partitions of 2 new stores: NATUR, PURNA"
    # The daemon applies the request. GONE left the file after a run synced it; TYPO was
    # typed into the UI's partition picker (which adds a partition for any text).
    instance.add_dynamic_partitions(STORE_PARTITIONS_NAME, [*request.partition_keys, "GONE"])
    instance.report_runless_asset_event(AssetMaterialization(NEW_ORDERS, partition="GONE"))
    instance.add_dynamic_partitions(STORE_PARTITIONS_NAME, ["TYPO"])
    second = evaluate(first.cursor)
    assert second.dynamic_partitions_requests == [
        DeleteDynamicPartitionsRequest(STORE_PARTITIONS_NAME, ["TYPO"])
    ]
    assert second.skip_message == (
        "all 2 stores of the stores file have their partition; deleted 1 partitions no "
        "store of the file has and no run synced (typed in the UI, or a store removed "
        "before its first sync): TYPO; 1 stores no longer in the file keep their history "
        "and are not synced: GONE"
    )
    assert "GONE" in instance.get_dynamic_partitions(STORE_PARTITIONS_NAME)


def test_a_store_held_by_another_run_fails_alone_in_a_batch(
    env: Env, instance: DagsterInstance
) -> None:
    # One sync per store (invariant 9) where the run queue cannot see it: a range run's
    # store held by another run is refused by its lock, the other stores sync.
    runtime = env.runtime()
    try:
        with store_lock(runtime.engine, "NATUR"):
            result = run_range(env, instance, "NATUR", "PURNA")
    finally:
        runtime.close()
    assert not result.success
    assert set(materialized(result)) == {"PURNA"}
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = str(failure.step_failure_data.user_failure_data.description)
    assert "store NATUR" in description and "another run holds" in description
    assert store_summary(env.runtime().engine, "NATUR").order_count == 0
