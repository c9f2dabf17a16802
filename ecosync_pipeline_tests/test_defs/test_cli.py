"""The Dagster CLI materializes new_orders for a range of stores, as an operator backfills."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline_tests.test_defs.conftest import STORES, Env

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_cli_materializes_new_orders_for_a_range_of_store_partitions_in_one_run(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "data" / "dagster.yaml", home / "dagster.yaml")
    child_env = env.subprocess_env(DAGSTER_HOME=str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The partitions the store_partitions_sensor registers from the stores file.
    with DagsterInstance.from_config(str(home)) as instance:
        register_stores(instance, STORES)
    # Every store in one run: a partition range (the asset's single-run backfill policy).
    run = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "ecosync_pipeline.definitions",
            "--select",
            "new_orders",
            "--partition-range",
            f"{STORES[0]}...{STORES[-1]}",
        ],
        cwd=tmp_path,  # not the project root: a .env there must not leak in
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:]
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
