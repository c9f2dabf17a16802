"""The dagster CLI as the README prints it, on a fresh DAGSTER_HOME: no sensor has ticked,
no partition was registered by hand. The code location registers the stores file's
partitions as it loads, so each command finds the store it names."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline_tests.helpers import readme_commands
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAGSTER = str(BIN / "dagster")
DAEMON = str(BIN / "dagster-daemon")
CODE = ["-m", "ecosync_pipeline.definitions"]
WORKSPACE = ["-w", str(ROOT / "workspace.yaml")]
"""`dagster dev` (and its daemon) serve the code location of the workspace file."""
NEVER = "0 3 1 1 *"
"""A cron for the schedules that does not fire while a test runs (the daemon runs them)."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DAGSTER_HOME with the README's instance configuration (data/dagster.yaml),
    which this process reads too (its storage is under $DAGSTER_HOME)."""
    path = tmp_path / "dagster_home"
    path.mkdir()
    shutil.copy(ROOT / "data" / "dagster.yaml", path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    return path


@pytest.fixture
def child_env(env: Env, home: Path) -> dict[str, str]:
    return env.subprocess_env(
        DAGSTER_HOME=str(home),
        ECOSYNC_SYNC_CRON=NEVER,
        ECOSYNC_RECONCILE_CRON=NEVER,
        ECOSYNC_STATUS_CRON=NEVER,
    )


def dagster(
    args: list[str], child_env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run a dagster command as an operator would (not from the project root: a .env
    there must not leak in)."""
    return subprocess.run(
        [DAGSTER, *args],
        cwd=cwd,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )


def order_counts(env: Env) -> dict[str, int]:
    runtime = env.runtime()
    try:
        summaries = store_summaries(runtime.engine)
    finally:
        runtime.close()
    return {s: summaries[s].order_count if s in summaries else 0 for s in STORES}


def runs_of(home: Path, store: str) -> set[str]:
    """The ids of the runs one filter on the Runs page finds for ``store``."""
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(RunsFilter(tags={f"ecosync/store.{store}": "1"}))
    return {r.run_id for r in runs}


def test_asset_materialize_syncs_a_store_and_a_range_on_a_fresh_instance(
    env: Env, home: Path, child_env: dict[str, str], tmp_path: Path
) -> None:
    one = dagster(
        ["asset", "materialize", *CODE, "--select", "new_orders", "--partition", "NATUR"],
        child_env,
        tmp_path,
    )
    assert one.returncode == 0, one.stdout[-3000:]
    assert order_counts(env) == {"NATUR": env.simulator.count("NATUR"), "PURNA": 0}
    env.simulator.add_orders("NATUR", 7)
    # Every store in one run: a partition range (the asset's single-run backfill policy).
    both = dagster(
        [
            "asset",
            "materialize",
            *CODE,
            "--select",
            "new_orders",
            "--partition-range",
            f"{STORES[0]}...{STORES[-1]}",
        ],
        child_env,
        tmp_path,
    )
    assert both.returncode == 0, both.stdout[-3000:]
    assert order_counts(env) == {s: env.simulator.count(s) for s in STORES}
    # A clean run: no step skipped, no check output missing.
    assert "Skipping step" not in both.stdout
    assert "did not yield or return expected outputs" not in both.stdout
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("stores") == list(STORES)
        assert instance.get_materialized_partitions(AssetKey("new_orders")) == set(STORES)
        runs = instance.get_runs()
    # One filter finds every run of a store: NATUR's two, PURNA's one (the range).
    assert len(runs) == 2
    assert runs_of(home, "NATUR") == {r.run_id for r in runs}
    assert len(runs_of(home, "PURNA")) == 1


@contextmanager
def daemon(child_env: dict[str, str], cwd: Path) -> Iterator[Path]:
    """`dagster-daemon run` (what `dagster dev` starts), which launches the queued runs;
    yields its log file. Started once the instance exists: two processes creating a fresh
    SQLite instance at once race on its tables."""
    log_path = cwd / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [DAEMON, "run", *WORKSPACE],
            cwd=cwd,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its code server and runs in its own process group
        )
        try:
            yield log_path
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def test_job_backfill_queues_a_run_per_store_on_a_fresh_instance(
    env: Env, home: Path, child_env: dict[str, str], tmp_path: Path
) -> None:
    [printed] = [c for c in readme_commands("Dagster") if c[1:3] == ["job", "backfill"]]
    # As printed, from a folder of its own (the workspace file named by its full path).
    args = [str(ROOT / a) if a == "workspace.yaml" else a for a in printed[1:]]
    assert args[args.index("-w") + 1] == WORKSPACE[1], printed
    backfill = dagster(args, child_env, tmp_path)
    assert backfill.returncode == 0, backfill.stdout[-3000:]
    assert "Launched backfill job" in backfill.stdout
    deadline = time.monotonic() + 240
    with daemon(child_env, tmp_path) as log, DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            backfill_runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
            if len(backfill_runs) == len(STORES) and all(r.is_finished for r in backfill_runs):
                break
            time.sleep(2)
        else:
            shown = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"the backfill's runs did not finish: {backfill_runs}\n{shown}")
    assert sorted(r.tags["dagster/partition"] for r in backfill_runs) == sorted(STORES)
    assert all(r.status == DagsterRunStatus.SUCCESS for r in backfill_runs)
    assert order_counts(env) == {s: env.simulator.count(s) for s in STORES}
    for run in backfill_runs:
        assert run.run_id in runs_of(home, run.tags["dagster/partition"])
