"""Under Dagster: a field set aside is named in the run's metadata and log; only an outage
is retried (a payload that breaks the contract fails once, naming store and page)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import cli_world_for, make_token


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def materialize_store(
    store: AdversarialStore,
    server: AdversarialServer,
    settings_dir: Path,
    postgres_url: str,
    redis_url: str,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    world = cli_world_for(server, postgres_url, redis_url, settings_dir)
    world.configure(store)
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(world.env)
    register_stores(instance, [store.identifier])
    return materialize(
        [build_new_orders(store_partitions())],
        partition_key=store.identifier,
        instance=instance,
        resources=ecosync_resources(settings),
        raise_on_error=False,
    )


@pytest.fixture
def run_store(
    adversarial: AdversarialServer,
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[AdversarialStore], Any]:
    """Materialize a store's new_orders against the adversarial server, run after run."""
    return lambda store: materialize_store(
        store, adversarial, tmp_path, postgres_url, redis_url, instance, monkeypatch
    )


def test_set_aside_field_is_named_in_the_materialization_metadata_and_the_run_log(
    run_store: Callable[[AdversarialStore], Any], instance: DagsterInstance
) -> None:
    store = AdversarialStore("DAGODD", make_token(), list(range(1, 11)), odd={4: {"total": "NaN"}})
    result = run_store(store)
    assert result.success
    [materialization] = result.asset_materializations_for_node("new_orders")
    metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    assert metadata["set_aside"] == 1 and metadata["orders_new"] == 10
    expected = "store DAGODD: page 1: order 4: field 'total' set aside (it is NaN"
    assert expected in metadata["set_aside_fields"]
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(expected in message for message in logs)


def test_contract_violation_fails_once_without_dagster_retries(
    run_store: Callable[[AdversarialStore], Any], instance: DagsterInstance
) -> None:
    store = AdversarialStore("DAGBAD", make_token(), list(range(1, 41)), ignore_page=True)
    result = run_store(store)
    assert not result.success
    events = {e.event_type_value for e in result.all_events}
    assert "STEP_UP_FOR_RETRY" not in events
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data.user_failure_data
    assert str(data.description).startswith("ContractViolation: store DAGBAD: page 2")
    assert data.metadata["retryable"].value == "no"


def test_check_after_a_deletion_and_arrivals_on_a_server_without_meta(
    run_store: Callable[[AdversarialStore], Any], instance: DagsterInstance
) -> None:
    """A server of our own, not the simulator: sparse ids, no ``meta``, an order deleted
    from page 1 and five new ones between two runs. The second run's check (its reads on
    one connection) finds nothing missing and names the deletion."""
    ids = [i for i in range(1, 70) if i % 3]  # 46 sparse ids, three pages of 20
    store = AdversarialStore("DAGNOMETA", make_token(), ids, meta=False)
    first = run_store(store)
    assert first.success
    store.ids.remove(ids[3])
    store.ids.extend(range(100, 105))
    second = run_store(store)
    assert second.success
    [materialization] = second.asset_materializations_for_node("new_orders")
    assert materialization.metadata["orders_new"].value == 5
    # The run evaluates store_freshness too; this test reads the completeness check.
    [check] = [
        c for c in second.get_asset_check_evaluations() if c.check_name == "new_orders_complete"
    ]
    values = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert values["missing_from_database"] == 0
    assert values["deleted_upstream"] == 1
    assert values["orders_served_by_api"] == len(store.ids)


@pytest.mark.parametrize("meta", [True, False], ids=["meta", "no-meta"])
def test_check_counts_at_the_size_a_capped_server_serves(
    meta: bool, run_store: Callable[[AdversarialStore], Any]
) -> None:
    """A server serving 15 of the 20 asked: the check counts the orders served up to the
    last id at 15 a page, so it neither reports orders missing nor hides any."""
    ids = [7000 + 3 * i for i in range(200)]  # sparse, far from 1: 14 pages of 15
    store = AdversarialStore("DAGCAP", make_token(), ids, per_page_cap=15, meta=meta)
    assert run_store(store).success
    store.ids.extend(range(ids[-1] + 1, ids[-1] + 6))
    second = run_store(store)
    assert second.success
    [check] = [
        c for c in second.get_asset_check_evaluations() if c.check_name == "new_orders_complete"
    ]
    values = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert values["orders_served_by_api"] == len(store.ids)
    assert values["missing_from_database"] == 0
    assert check.passed, check.description
