"""A tick of the order sync schedule executed by two Celery workers (dagster-celery).

The instance is data/dagster-celery.yaml on a PostgreSQL database of the test's own; the
broker is the local RabbitMQ, on a queue of the test's own. The schedule's tick asks for
one run per store; each run is launched by the instance's CeleryRunLauncher, taken by one
of two `celery` workers, and executed there against the shared orders database, Redis and
backup. Afterwards the orders table matches the simulator's ids exactly.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    JobDefinition,
    build_schedule_context,
    reconstructable,
)
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from ecosync_pipeline import definitions
from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.lab.bench.processes import celery_worker_argv, started, wait_for_lines
from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env, set_dagster_pg_env

ROOT = Path(__file__).resolve().parents[2]
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not rabbitmq_up(),
        reason="RabbitMQ is not running on 127.0.0.1:5672; bash scripts/services.sh starts it",
    ),
]


def sync_orders() -> JobDefinition:
    """The sync job as a worker rebuilds it: the code location's own, from the environment."""
    return definitions.defs().resolve_job_def("sync_orders")


@pytest.fixture
def celery_home(
    env: Env, tmp_path: Path, dagster_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DagsterInstance, dict[str, str]]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data" / "dagster-celery.yaml", home / "dagster.yaml")
    set_dagster_pg_env(monkeypatch, dagster_postgres_url)
    queue = f"ecosync-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ECOSYNC_CELERY_BROKER", BROKER)
    monkeypatch.setenv("ECOSYNC_CELERY_QUEUE", queue)
    with DagsterInstance.get() as instance:
        yield instance, env.subprocess_env()


def test_a_tick_runs_on_two_celery_workers_and_every_order_arrives(
    env: Env, tmp_path: Path, celery_home: tuple[DagsterInstance, dict[str, str]]
) -> None:
    instance, child_env = celery_home
    queue = child_env["ECOSYNC_CELERY_QUEUE"]
    defs = build_definitions(env.settings, resources=env.resources, batch_size=1)
    schedule = defs.resolve_schedule_def("order_sync_schedule")
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 25, 12, 15, tzinfo=timezone.utc),
        repository_def=defs.get_repository_def(),
        resources=env.resources,
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == len(STORES)
    # Each worker imports this module and calls sync_orders() to rebuild the job.
    origin = reconstructable(sync_orders).get_python_origin()
    job = defs.resolve_job_def("sync_orders")
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    workers = [
        started(
            celery_worker_argv(f"w{i}", queue, BROKER, loglevel="INFO"), child_env, tmp_path, log
        )
        for i, log in enumerate(logs)
    ]
    with workers[0], workers[1]:
        assert wait_for_lines(logs, " ready.", timeout=60), [p.read_text() for p in logs]
        runs = [
            instance.create_run_for_job(
                job_def=job,
                run_config=request.run_config,
                tags={**request.tags, "dagster/partition": request.partition_key or ""},
                job_code_origin=origin,
            )
            for request in requests
        ]
        for run in runs:
            # The CeleryRunLauncher needs no workspace: the run names its code origin.
            instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = [instance.get_run_by_id(run.run_id) for run in runs]
            if all(r is not None and r.status in FINISHED for r in done):
                break
            time.sleep(0.5)
    text = [p.read_text() for p in logs]
    finished = [instance.get_run_by_id(run.run_id) for run in runs]
    assert [r.status if r else None for r in finished] == [DagsterRunStatus.SUCCESS] * 2, text
    # Each worker took one run: its Celery task id is in that worker's log only.
    tasks = [r.tags[DAGSTER_CELERY_TASK_ID_TAG] for r in finished if r is not None]
    assert sorted(sum(task in t for t in text) for task in tasks) == [1, 1], text
    assert [sum(task in t for task in tasks) for t in text] == [1, 1], text
    runtime = env.runtime()
    try:
        summaries = store_summaries(runtime.engine)
        for store in STORES:
            with runtime.engine.connect() as conn:
                held = {
                    row[0]
                    for row in conn.exec_driver_sql(
                        "SELECT order_id FROM orders WHERE store = %(s)s", {"s": store}
                    )
                }
            assert held == set(env.simulator.ids(store)), store
            assert summaries[store].order_count == len(held)
    finally:
        runtime.close()
