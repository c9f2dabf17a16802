"""new_orders per store partition, its completeness check, errors as failures.

Batches of stores (partition ranges), the schedule and the partitions sensor are in
test_batches.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    RunsFilter,
)
from sqlalchemy import delete

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline.storage import orders as orders_table
from ecosync_pipeline.storage import store_lock, store_summary
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    checks_by_name,
    metadata_values,
    set_dagster_pg_env,
    sync_partition,
)

ROOT = Path(__file__).resolve().parents[2]


def new_orders_metadata(result: Any) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("new_orders")
    return metadata_values(materialization.metadata)


def failure_description(result: Any) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.step_failure_data.user_failure_data.description)


def test_new_orders_syncs_one_store_and_reports_numbers_the_ui_plots(
    env: Env, instance: DagsterInstance
) -> None:
    result = sync_partition(env, instance, "PURNA")
    assert result.success
    metadata = new_orders_metadata(result)
    count = env.simulator.count("PURNA")
    assert metadata["orders_new"] == count
    assert metadata["orders_updated"] == 0
    assert metadata["from_page"] == 1
    assert metadata["to_page"] == env.simulator.last_page("PURNA")
    assert metadata["pages_fetched"] == env.simulator.last_page("PURNA")
    assert metadata["api_calls"] >= metadata["pages_fetched"]
    assert metadata["position_source"] == "calculated"
    assert metadata["stopped_by_budget"] == 0
    assert isinstance(metadata["seconds"], float)
    # The store's own count (a row count would stand for the whole table on the asset).
    assert metadata["orders_in_database"] == count
    assert "dagster/row_count" not in metadata
    first_id = env.simulator.first_id("PURNA")
    assert f"| {first_id} | PURNA{first_id} |" in metadata["preview"]
    # The other store's partition is untouched.
    assert store_summary(env.runtime().engine, "NATUR").order_count == 0
    assert checks_by_name(result)["new_orders_complete"].passed
    # Launched without the schedule's tags (as a Materialize, a backfill or the CLI), the
    # run tags itself with its store: one filter on the Runs page finds it.
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags["ecosync/store"] == "PURNA"
    assert run.tags["ecosync/store.PURNA"] == "1"
    assert run.tags["dagster/partition"] == "PURNA"  # what the run queue limits on
    found = instance.get_runs(RunsFilter(tags={"ecosync/store.PURNA": "1"}))
    assert [r.run_id for r in found] == [result.run_id]
    assert instance.get_runs(RunsFilter(tags={"ecosync/store.NATUR": "1"})) == []
    # The sync's metadata links there: the Runs page, every run, filtered by that tag.
    link = urlsplit(metadata["runs_of_this_store"])
    assert link.path == "/runs"
    assert parse_qs(link.query) == {"view": ["runs"], "q[]": ["tag:ecosync/store.PURNA=1"]}


def test_new_orders_second_run_fetches_only_the_new_pages_from_redis(
    env: Env, instance: DagsterInstance
) -> None:
    assert sync_partition(env, instance, "NATUR").success
    added = env.simulator.add_orders("NATUR", 30)
    result = sync_partition(env, instance, "NATUR")
    metadata = new_orders_metadata(result)
    assert metadata["orders_new"] == 30
    assert metadata["position_source"] == "redis"
    assert metadata["from_page"] == 5
    assert metadata["last_order_id"] == added[-1]
    assert metadata["preview"].splitlines()[2].startswith(f"| {added[0]} |")
    assert checks_by_name(result)["new_orders_complete"].passed


def test_completeness_check_says_which_ids_it_compared_after_a_sync_with_nothing_new(
    env: Env, instance: DagsterInstance
) -> None:
    # 125 orders: the audit reads pages of 100, so the newest page holds ids 101..125.
    env.simulator.add_orders("NATUR", 30)
    assert sync_partition(env, instance, "NATUR").success
    idle = sync_partition(env, instance, "NATUR")
    assert new_orders_metadata(idle)["orders_new"] == 0
    check = checks_by_name(idle)["new_orders_complete"]
    newest = env.simulator.page_ids("NATUR", 2, 100)
    last = env.simulator.last_id("NATUR")
    assert check.passed
    assert check.description == (
        f"store NATUR: the {len(newest)} orders EcoManager serves in ids "
        f"{newest[0]}..{last} are all in the database, compared id by id (the last sync "
        f"found no order after id {last})"
    )


def test_new_orders_stops_at_the_time_budget_from_run_config(
    env: Env, instance: DagsterInstance
) -> None:
    result = sync_partition(env, instance, "NATUR", budget_seconds=0.000001)
    assert result.success
    metadata = new_orders_metadata(result)
    assert metadata["stopped_by_budget"] == 1
    assert metadata["pages_fetched"] == 1
    assert metadata["orders_new"] == 20
    # Stopping early loses nothing: the database holds every order up to where it stopped.
    assert checks_by_name(result)["new_orders_complete"].passed


def test_new_orders_fails_saying_another_run_holds_the_store(
    env: Env, instance: DagsterInstance
) -> None:
    runtime = env.runtime()
    try:
        with store_lock(runtime.engine, "NATUR"):
            result = sync_partition(env, instance, "NATUR")
    finally:
        runtime.close()
    assert not result.success
    description = failure_description(result)
    assert "store NATUR" in description
    assert "another run holds" in description


def test_new_orders_fails_naming_the_store_and_the_token_variable_without_the_token(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = env.environ["ECOSYNC_TEST_TOKEN_NATUR"]
    monkeypatch.setenv("ECOSYNC_TEST_TOKEN_NATUR", "x" * 80)
    result = sync_partition(env, instance, "NATUR")
    assert not result.success
    description = failure_description(result)
    assert description.startswith("ApiAuthError")
    assert "store NATUR" in description
    assert "ECOSYNC_TEST_TOKEN_NATUR" in description
    monkeypatch.setenv("ECOSYNC_TEST_TOKEN_NATUR", token)
    assert sync_partition(env, instance, "NATUR").success
    # Secrets never reach Dagster's event log (DESIGN, invariant 8).
    logged = "".join(repr(instance.all_logs(run.run_id)) for run in instance.get_runs())
    assert token not in logged
    assert "x" * 80 not in logged


def test_completeness_check_errors_when_the_database_lost_orders_the_api_serves(
    env: Env, instance: DagsterInstance
) -> None:
    assert sync_partition(env, instance, "NATUR").success
    lost = env.simulator.page_ids("NATUR", 2)[:3]
    runtime = env.runtime()
    try:
        with runtime.engine.begin() as conn:
            conn.execute(
                delete(orders_table).where(
                    orders_table.c.store == "NATUR", orders_table.c.order_id.in_(lost)
                )
            )
    finally:
        runtime.close()
    check = checks_by_name(sync_partition(env, instance, "NATUR"))["new_orders_complete"]
    assert not check.passed
    assert check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["missing_from_database"].value == 3
    assert check.partition == "NATUR"
    assert "store NATUR" in (check.description or "")


def test_completeness_check_warns_when_orders_were_deleted_on_ecomanager(
    env: Env, instance: DagsterInstance
) -> None:
    assert sync_partition(env, instance, "NATUR").success
    env.simulator.delete_orders("NATUR", env.simulator.page_ids("NATUR", 2)[:2])
    result = sync_partition(env, instance, "NATUR")
    assert result.success
    check = checks_by_name(result)["new_orders_complete"]
    assert not check.passed
    assert check.severity == AssetCheckSeverity.WARN
    assert check.metadata["deleted_upstream"].value == 2


def test_new_orders_materializes_on_an_instance_stored_in_postgres(
    env: Env, tmp_path: Path, dagster_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(ROOT / "data" / "dagster-production.yaml", tmp_path / "dagster.yaml")
    set_dagster_pg_env(monkeypatch, dagster_postgres_url)
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 4
        defs = build_definitions(env.settings, resources=env.resources)
        register_stores(instance, STORES)
        result = defs.resolve_job_def("sync_orders").execute_in_process(
            instance=instance, partition_key="NATUR"
        )
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey("new_orders"))
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.partition == "NATUR"
        assert store_summary(env.runtime().engine, "NATUR").order_count == env.simulator.count(
            "NATUR"
        )
    finally:
        instance.dispose()


def test_completeness_check_names_the_skipped_range_when_a_deletion_hides_it_from_counts(
    env: Env, instance: DagsterInstance
) -> None:
    """A deleted order still in the table and a skipped one cancel out in any count."""
    assert sync_partition(env, instance, "NATUR").success
    new = env.simulator.add_orders("NATUR", 30)
    env.simulator.delete_orders("NATUR", env.simulator.page_ids("NATUR", 1)[:1])
    result = sync_partition(env, instance, "NATUR")
    runtime = env.runtime()
    try:
        with runtime.engine.begin() as conn:
            conn.execute(
                delete(orders_table).where(
                    orders_table.c.store == "NATUR", orders_table.c.order_id == new[10]
                )
            )
    finally:
        runtime.close()
    # A run with nothing new audits the page of 100 around its window: it holds the gap.
    check = checks_by_name(sync_partition(env, instance, "NATUR"))["new_orders_complete"]
    assert result.success
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["missing_id_ranges"].value == str(new[10])
    assert "ecosync reconcile --store NATUR" in (check.description or "")
