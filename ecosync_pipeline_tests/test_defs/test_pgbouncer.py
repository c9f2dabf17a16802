"""The production layout through PgBouncer: data/dagster-production.yaml on Dagster's
PostgreSQL behind data/pgbouncer.ini, as scripts/services.sh starts it on 127.0.0.1:6432."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import psycopg2
import pytest
from dagster import DagsterInstance
from sqlalchemy.engine import make_url

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, set_dagster_pg_env

ROOT = Path(__file__).resolve().parents[2]
PGBOUNCER_PORT = 6432


def pgbouncer_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", PGBOUNCER_PORT), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not pgbouncer_up(),
    reason=f"PgBouncer is not running on 127.0.0.1:{PGBOUNCER_PORT}; bash scripts/services.sh "
    "starts it (apt-get install pgbouncer)",
)


def server_connections(database: str) -> int:
    """Server connections PgBouncer holds for ``database`` now (in use or kept idle)."""
    admin = psycopg2.connect(
        host="127.0.0.1", port=PGBOUNCER_PORT, user="postgres", dbname="pgbouncer"
    )
    try:
        # The admin console speaks the simple query protocol only: no transaction.
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SHOW POOLS")
            columns = [c[0] for c in cursor.description or ()]
            pools = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        admin.close()
    return sum(
        int(p["sv_active"]) + int(p["sv_idle"]) + int(p["sv_used"])
        for p in pools
        if p["database"] == database
    )


def test_a_batch_run_on_the_production_instance_reaches_its_database_through_pgbouncer(
    env: Env, tmp_path: Path, dagster_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(ROOT / "data" / "dagster-production.yaml", tmp_path / "dagster.yaml")
    set_dagster_pg_env(monkeypatch, dagster_postgres_url, port=PGBOUNCER_PORT)
    database = make_url(dagster_postgres_url).database or ""
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        register_stores(instance, STORES)
        defs = build_definitions(env.settings, resources=env.resources)
        # A run of many stores holds its connections for the run, as the webserver does;
        # PgBouncer must take the startup parameters that asks for.
        result = defs.resolve_job_def("sync_orders").execute_in_process(
            instance=instance,
            tags={PARTITION_RANGE_START_TAG: STORES[0], PARTITION_RANGE_END_TAG: STORES[-1]},
        )
        assert result.success
        stored = {m.partition for m in result.asset_materializations_for_node("new_orders")}
        assert stored == set(STORES)
        assert {e.partition for e in result.get_asset_check_evaluations()} == set(STORES)
    finally:
        instance.dispose()
    # Every client has gone; PgBouncer keeps the server connection for the next one.
    assert server_connections(database) >= 1
