"""PrestartedRunLauncher: runs executed by processes started before them, on an instance
built from data/dagster-production.yaml (PostgreSQL), through Dagster's own launch_run."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.launcher import LaunchRunContext, WorkerStatus

from ecosync_pipeline.defs.launcher import WORKER_TAG, PrestartedRunLauncher, process_start
from ecosync_pipeline_tests.test_defs.conftest import set_dagster_pg_env

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.fixture
def instance(
    tmp_path: Path, dagster_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "data" / "dagster-production.yaml", home / "dagster.yaml")
    set_dagster_pg_env(monkeypatch, dagster_postgres_url)
    instance = DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


def launcher_of(instance: DagsterInstance) -> PrestartedRunLauncher:
    launcher = instance.run_launcher
    assert isinstance(launcher, PrestartedRunLauncher)
    return launcher


def create_run(
    instance: DagsterInstance,
    folder: Path,
    wait_seconds: float = 0.0,
    module: str = "ecosync_pipeline_tests.launcher_location",
    working_directory: Path = ROOT,
) -> DagsterRun:
    """A run of the test location's job, not launched yet."""
    repository = ReconstructableRepository.for_module(
        module, "defs", working_directory=str(working_directory)
    )
    job = ReconstructableJob(repository, "record_process")
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        run_config={
            "ops": {"work": {"config": {"folder": str(folder), "wait_seconds": wait_seconds}}}
        },
        job_code_origin=job.get_python_origin(),
    )
    return run


def launch(instance: DagsterInstance, folder: Path, wait_seconds: float = 0.0) -> DagsterRun:
    """Create a run of the test location's job and launch it as the run queue does."""
    run = create_run(instance, folder, wait_seconds)
    return instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def finished(instance: DagsterInstance, run_id: str) -> DagsterRun:
    def done() -> bool:
        run = instance.get_run_by_id(run_id)
        return run is not None and run.status in FINISHED

    wait_until(done, f"run {run_id} to finish")
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def worker_pid(instance: DagsterInstance, run_id: str) -> int:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return int(run.tags[WORKER_TAG].rsplit(":", 2)[1])


def running(pid: int) -> bool:
    """Whether process ``pid`` exists (a released spare has been waited for)."""
    return process_start(pid) is not None


def engine_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.dagster_event.message or ""
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
        and entry.dagster_event.event_type_value == "ENGINE_EVENT"
    ]


def test_the_production_instance_launches_runs_in_prestarted_processes(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    launcher = launcher_of(instance)
    assert launcher.spares == 2
    # No spare before the first run: it starts its own process, like the default launcher.
    first = launch(instance, tmp_path)
    assert finished(instance, first.run_id).status == DagsterRunStatus.SUCCESS
    assert (tmp_path / f"{first.run_id}.pid").read_text() == str(worker_pid(instance, first.run_id))
    started = [m for m in engine_messages(instance, first.run_id) if "Run worker process" in m]
    assert started == [
        f"[PrestartedRunLauncher] Run worker process {worker_pid(instance, first.run_id)} started"
    ]
    # Once no run is running, spares are started, one a second, past their imports.
    wait_until(lambda: len(launcher.spare_pids()) == 2, "two spares")
    second = launch(instance, tmp_path)
    assert finished(instance, second.run_id).status == DagsterRunStatus.SUCCESS
    assert any("prestarted" in m for m in engine_messages(instance, second.run_id))
    # The run executed in the process its tag names (the spare's), and that process ended.
    pid = worker_pid(instance, second.run_id)
    assert (tmp_path / f"{second.run_id}.pid").read_text() == str(pid)
    ended = instance.get_run_by_id(second.run_id)
    assert ended is not None
    wait_until(
        lambda: launcher.check_run_worker_health(ended).status == WorkerStatus.SUCCESS, "exit"
    )
    assert pid not in launcher.spare_pids()


def test_cancelling_a_run_interrupts_its_process(instance: DagsterInstance, tmp_path: Path) -> None:
    run = launch(instance, tmp_path, wait_seconds=120)
    wait_until(lambda: (tmp_path / f"{run.run_id}.pid").exists(), "the op to start")
    started = instance.get_run_by_id(run.run_id)
    assert started is not None
    assert launcher_of(instance).check_run_worker_health(started).status == WorkerStatus.RUNNING
    assert instance.run_launcher.terminate(run.run_id)
    assert finished(instance, run.run_id).status == DagsterRunStatus.CANCELED
    # A finished run cannot be cancelled again.
    assert not instance.run_launcher.terminate(run.run_id)


def test_run_monitoring_learns_that_a_killed_run_worker_is_gone(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    run = launch(instance, tmp_path, wait_seconds=120)
    wait_until(lambda: (tmp_path / f"{run.run_id}.pid").exists(), "the op to start")
    launcher = launcher_of(instance)
    os.kill(worker_pid(instance, run.run_id), signal.SIGKILL)
    started = instance.get_run_by_id(run.run_id)
    assert started is not None
    wait_until(
        lambda: launcher.check_run_worker_health(started).status == WorkerStatus.FAILED,
        "the worker to be reported gone",
    )
    health = launcher.check_run_worker_health(started)
    assert "has exited before the run finished" in (health.msg or "")


def test_disposing_the_launcher_ends_its_waiting_spares(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    launcher = launcher_of(instance)
    run = launch(instance, tmp_path)
    finished(instance, run.run_id)
    wait_until(lambda: len(launcher.spare_pids()) == 2, "two spares")
    spares = launcher.spare_pids()
    launcher.dispose()
    assert not any(running(pid) for pid in spares)
    assert len(launcher.spare_pids()) == 0


def test_a_spare_past_its_age_is_replaced_so_new_code_reaches_the_runs(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    launcher = launcher_of(instance)
    finished(instance, launch(instance, tmp_path).run_id)
    wait_until(lambda: len(launcher.spare_pids()) == 2, "two spares")
    old = launcher.spare_pids()
    launcher.max_spare_age_seconds = 0
    launcher.tend()
    launcher.max_spare_age_seconds = 600
    assert not any(running(pid) for pid in old)
    wait_until(lambda: len(launcher.spare_pids()) == 2, "two new spares")
    assert not set(launcher.spare_pids()) & set(old)


def test_only_the_launcher_the_instance_keeps_holds_spares(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    """Two threads launching the first runs at once may each build a launcher."""
    other = PrestartedRunLauncher()
    other.register_instance(instance)
    run = create_run(instance, tmp_path)
    other.launch_run(LaunchRunContext(dagster_run=run, workspace=None))  # type: ignore[arg-type]
    assert finished(instance, run.run_id).status == DagsterRunStatus.SUCCESS
    time.sleep(2)  # two rounds of its tending
    other.tend()
    assert len(other.spare_pids()) == 0
    finished(instance, launch(instance, tmp_path).run_id)
    wait_until(lambda: len(launcher_of(instance).spare_pids()) == 2, "the kept launcher's spares")
    other.dispose()


def test_a_spare_runs_the_code_on_disk_not_the_code_it_imported(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    """A deploy between a spare's start and its run: the run executes the new code."""
    code = tmp_path / "code"
    code.mkdir()
    source = (ROOT / "ecosync_pipeline_tests" / "launcher_location" / "__init__.py").read_text()
    recording = source.replace(
        "    folder = Path(config.folder)\n",
        '    folder = Path(config.folder)\n    (folder / "version").write_text(VERSION)\n',
    )
    location = code / "versioned_location.py"
    location.write_text(recording + '\nVERSION = "1"\n')
    launcher = launcher_of(instance)

    def run_once() -> DagsterRun:
        run = create_run(instance, tmp_path, module="versioned_location", working_directory=code)
        launched = instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
        assert finished(instance, launched.run_id).status == DagsterRunStatus.SUCCESS
        return launched

    run_once()
    assert (tmp_path / "version").read_text() == "1"
    wait_until(lambda: len(launcher.spare_pids()) == 2, "two spares")
    time.sleep(3)  # the spares' imports are done, and the new file's time is later
    location.write_text(recording + '\nVERSION = "2"\n')
    second = run_once()
    assert any("prestarted" in m for m in engine_messages(instance, second.run_id))
    assert (tmp_path / "version").read_text() == "2"
    assert (tmp_path / f"{second.run_id}.pid").read_text() == str(
        worker_pid(instance, second.run_id)
    )
