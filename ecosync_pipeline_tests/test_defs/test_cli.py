"""The Dagster CLI materializes new_orders for every store, as an operator backfills."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_cli_materializes_new_orders_for_each_store_partition(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data" / "dagster.yaml", home / "dagster.yaml")
    child_env = env.subprocess_env(DAGSTER_HOME=str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Create the instance's SQLite storage once, so the two runs below do not race to.
    DagsterInstance.from_config(str(home)).dispose()
    # One run per store, as a backfill of static partitions makes them (a single-run
    # --partition-range would sync several stores in one run); both at once, since each
    # store is independent.
    runs = [
        subprocess.Popen(
            [
                DAGSTER,
                "asset",
                "materialize",
                "-m",
                "ecosync_pipeline.definitions",
                "--select",
                "new_orders",
                "--partition",
                store,
            ],
            cwd=tmp_path,  # not the project root: a .env there must not leak in
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for store in STORES
    ]
    for store, run in zip(STORES, runs, strict=True):
        output, _ = run.communicate(timeout=180)
        assert run.returncode == 0, f"{store}:\n{output[-3000:]}"
    runtime = env.runtime()
    try:
        summaries = store_summaries(runtime.engine)
    finally:
        runtime.close()
    assert {s: summaries[s].order_count for s in STORES} == {
        s: env.simulator.count(s) for s in STORES
    }
    with DagsterInstance.from_config(str(home)) as instance:
        materialized = instance.get_materialized_partitions(AssetKey("new_orders"))
    assert materialized == set(STORES)
