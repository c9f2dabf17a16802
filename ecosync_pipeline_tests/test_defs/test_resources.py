"""The resources: one per dependency, built once per run, each replaceable by a test."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from dagster import DagsterInstance, materialize
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline.defs.positions.assets import restored_sync_positions
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.resources import (
    ECOMANAGER,
    ORDERS_DB,
    POSITIONS,
    EcoManagerResource,
    EcoManagerTestResource,
    OrdersDatabaseResource,
    PositionsResource,
)
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import MissingToken
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline_tests.test_defs.conftest import SPECS, STORES, Env, flush_redis, sync_all


class CountingDatabase(OrdersDatabaseResource):
    """The real database resource, noting every engine it hands out."""

    engines: ClassVar[list[int]] = []

    @property
    def engine(self) -> Engine:
        engine = super().engine
        CountingDatabase.engines.append(id(engine))
        return engine


class CountingPositions(PositionsResource):
    chains: ClassVar[list[int]] = []

    @property
    def chain(self) -> PositionChain:
        chain = super().chain
        CountingPositions.chains.append(id(chain))
        return chain


class RecordingEcoManager(EcoManagerResource):
    """The real clients, and a note of each store a client was built for."""

    built: ClassVar[list[str]] = []

    def client(self, store: Store) -> EcoManagerClient:
        RecordingEcoManager.built.append(store.identifier)
        return super().client(store)


def _substituted(env: Env) -> dict[str, Any]:
    database = CountingDatabase(url=env.settings.database_url)
    ecomanager = RecordingEcoManager(stores_file=env.settings.stores_file)
    positions = CountingPositions(
        redis_url=env.settings.redis_url,
        backup_path=env.settings.backup_path,
        orders_db=database,
        ecomanager=ecomanager,
    )
    CountingDatabase.engines.clear()
    CountingPositions.chains.clear()
    RecordingEcoManager.built.clear()
    return {ORDERS_DB: database, ECOMANAGER: ecomanager, POSITIONS: positions}


def test_the_recovery_job_builds_one_engine_and_one_chain_for_its_five_steps(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    flush_redis(env)
    result = recover_sync_positions.execute_in_process(
        instance=instance, resources=_substituted(env)
    )
    assert result.success
    # Every step asked for the chain, and each got the same one, over the same engine.
    assert len(CountingPositions.chains) >= 5
    assert len(set(CountingPositions.chains)) == 1
    assert len(set(CountingDatabase.engines)) == 1
    assert sorted(RecordingEcoManager.built) == sorted(STORES)


def test_a_substituted_ecomanager_resource_is_the_one_the_restore_uses(
    env: Env, instance: DagsterInstance
) -> None:
    sync_all(env)
    flush_redis(env)
    result = materialize([restored_sync_positions], instance=instance, resources=_substituted(env))
    assert result.success
    assert sorted(RecordingEcoManager.built) == sorted(STORES)
    assert len(set(CountingPositions.chains)) == 1


def test_a_sync_and_its_check_share_one_engine_between_the_database_and_the_positions(
    env: Env, instance: DagsterInstance
) -> None:
    register_stores(instance, STORES)
    result = materialize(
        [build_new_orders(store_partitions())],
        partition_key="NATUR",
        instance=instance,
        resources=_substituted(env),
    )
    assert result.success
    # new_orders reaches the database through the run's composition root (the positions
    # resource's Runtime), whose engine is orders_db's: the chain and the sync share it.
    assert len(CountingDatabase.engines) >= 1
    assert len(set(CountingDatabase.engines)) == 1
    # The run's client came from the substitute: one for the store's sync and its check.
    assert list(RecordingEcoManager.built) == ["NATUR"]


def test_the_test_version_of_ecomanager_restores_with_the_tokens_it_is_given(
    env: Env, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_all(env)
    flush_redis(env)
    for spec in SPECS:  # no token in the environment: only the resource's are there
        monkeypatch.delenv(spec.token_env)
    test_api = EcoManagerTestResource(
        stores_file=env.settings.stores_file,
        tokens={sid: env.simulator.token(sid) for sid in STORES},
    )
    resources = {
        **env.resources,
        ECOMANAGER: test_api,
        POSITIONS: PositionsResource(
            redis_url=env.settings.redis_url,
            backup_path=env.settings.backup_path,
            orders_db=env.resources[ORDERS_DB],
            ecomanager=test_api,
        ),
    }
    result = materialize([restored_sync_positions], instance=instance, resources=resources)
    assert result.success
    assert sorted(k.rsplit(":", 1)[1] for k in env.redis.keys("ecomanager:pageinfo:*")) == sorted(
        STORES
    )


def test_the_test_version_of_ecomanager_has_no_token_it_was_not_given(env: Env) -> None:
    test_api = EcoManagerTestResource(stores_file=env.settings.stores_file, tokens={})
    with pytest.raises(MissingToken):
        test_api.client(test_api.store(STORES[0]))
