"""Fixtures of the Dagster layer: two small simulated stores, settings pointing at them,
the resources built from those settings, and helpers to look at what a run recorded.

Every test runs against the real Redis (the test database number), PostgreSQL (the
session's database, emptied per test) and the simulator over HTTP.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import yaml
from dagster import DagsterInstance, materialize
from sqlalchemy.engine import make_url

from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline_tests.conftest import REDIS_MARKER, TEST_POSTGRES_ADMIN_URL
from ecosync_pipeline_tests.helpers import settings_environ, settings_in, two_stores

SPECS = two_stores("ECOSYNC_TEST_TOKEN_")
STORES = tuple(spec.identifier for spec in SPECS)


@dataclass
class Env:
    """What a test needs: settings, the resources, the simulator and the ECOSYNC_* variables."""

    settings: Settings
    resources: dict[str, Any]
    simulator: Simulator
    environ: dict[str, str]
    redis: redis.Redis

    def runtime(self) -> Runtime:
        """A Runtime on the test settings (close it)."""
        return Runtime.from_settings(self.settings)

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus the ECOSYNC_* variables and tokens, for a child process."""
        env = dict(os.environ)
        env.update(self.environ)
        env.update(extra)
        return env


def write_stores_file(path: Path, simulator: Simulator, specs: tuple[StoreSpec, ...]) -> None:
    """A stores YAML whose base_urls point at the served simulator."""
    stores = [
        {
            "identifier": spec.identifier,
            "name": spec.name,
            "base_url": simulator.store_url(spec.identifier),
            "token_env": spec.token_env,
            "per_page": 20,
            # No separate first-import page size: positions stay exact from the first
            # run, so tests can compare pages (the import mode has its own tests).
            "import_per_page": 20,
            "requests_per_second": 200,
        }
        for spec in specs
    ]
    path.write_text(yaml.safe_dump({"stores": stores}), encoding="utf-8")


@pytest.fixture
def env(
    tmp_path: Path,
    simulator: Simulator,
    redis_url: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    """Two simulated stores, an empty Redis database and an empty orders database."""
    simulator.configure(SPECS)
    stores_file = tmp_path / "stores.yaml"
    write_stores_file(stores_file, simulator, SPECS)
    settings = settings_in(tmp_path, postgres_url, redis_url, stores_file)
    environ = settings_environ(settings)
    for spec in SPECS:
        environ[spec.token_env] = simulator.token(spec.identifier)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield Env(settings, ecosync_resources(settings), simulator, environ, client)
    finally:
        client.close()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """An ephemeral Dagster instance (in-memory run and event storage)."""
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def dagster_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own for Dagster's run storage, dropped afterwards."""
    name = f"ecosync_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TEST_POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{TEST_POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(TEST_POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_dagster_pg_env(monkeypatch: pytest.MonkeyPatch, url: str, port: int | None = None) -> None:
    """The DAGSTER_PG_* variables data/dagster-production.yaml reads, for ``url`` (on
    ``port`` when given: PgBouncer's, in front of the same server)."""
    parsed = make_url(url)
    monkeypatch.setenv("DAGSTER_PG_HOST", parsed.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(port or parsed.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", parsed.database or "")
    monkeypatch.setenv("DAGSTER_PG_USER", parsed.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", parsed.password or "")


def metadata_values(entries: Any) -> dict[str, Any]:
    """Metadata of an event as plain values (MetadataValue.value)."""
    return {key: getattr(value, "value", value) for key, value in entries.items()}


def sync_all(env: Env) -> dict[str, int]:
    """Sync every store with the core (setup, not under test); last order id per store."""
    runtime = env.runtime()
    try:
        return {s: runtime.sync(s).last_order_id or 0 for s in STORES}
    finally:
        runtime.close()


def flush_redis(env: Env) -> None:
    """FLUSHDB on the test database (ours), keeping the marker that claims it."""
    env.redis.flushdb()
    env.redis.set(REDIS_MARKER, "1")


def sync_partition(
    env: Env, instance: DagsterInstance, store: str, budget_seconds: float | None = None
) -> Any:
    """Materialize new_orders for one store, with its completeness check."""
    register_stores(instance, STORES)
    config = (
        {"ops": {"new_orders": {"config": {"budget_seconds": budget_seconds}}}}
        if budget_seconds is not None
        else None
    )
    return materialize(
        [build_new_orders(store_partitions())],
        partition_key=store,
        instance=instance,
        resources=env.resources,
        run_config=config,
        raise_on_error=False,
    )


def checks_by_name(result: Any) -> dict[str, Any]:
    """The asset check evaluations of an execution result, by check name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}
