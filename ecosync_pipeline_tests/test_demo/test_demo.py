"""`ecosync demo` in its small form: the seed's scenario, asserted from its table; then
the README's command line, pasted as printed, on what the demo left."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance
from dotenv import dotenv_values

from ecosync_pipeline.cli import main
from ecosync_pipeline.lab.bench.recovery import goal_bound
from ecosync_pipeline.lab.demo import run_demo
from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer
from ecosync_pipeline.storage import iter_order_ids, make_engine
from ecosync_pipeline_tests.helpers import readme_commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A project root of the demo's own: the demo stores and dagster.yaml, nothing else."""
    (tmp_path / "data").mkdir()
    for name in ("stores.yaml", "dagster.yaml"):
        shutil.copy(ROOT / "data" / name, tmp_path / "data" / name)
    return tmp_path


def test_small_demo_recovers_with_nothing_missing_and_the_readme_command_line_works_on_it(
    demo_root: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    report = run_demo(
        demo_root, small=True, redis_url=redis_url, port=0, budget_seconds=2, say=lines.append
    )
    assert report.redis_available
    assert [r.store for r in report.rows] == ["NATUR", "PURNA", "DILST", "MGSTR", "JWLR"]
    assert "run requested" in report.sensor_message
    assert report.recovery_run_id is not None
    # The tick after the recovery sees the loss mended by it: no second run, no new loss.
    assert any(f"already mended by run {report.recovery_run_id[:8]}" in line for line in lines), (
        lines
    )
    assert any("all 5 stores healthy" in line for line in lines)
    for row in report.rows:
        assert row.sensor_saw == "flushed", row
        assert row.restored_from == "json", row
        assert (row.missing, row.duplicated) == (0, 0), row
        assert row.new_synced == row.new_orders, row
        assert row.resume_calls <= goal_bound(row.new_orders, 0), row
        assert row.old_calls > row.resume_calls, row
    # the runs are in the persistent instance under data/, for `dagster dev`
    assert (demo_root / "data" / "history").exists() or (demo_root / "data" / "storage").exists()
    env = (demo_root / ".env").read_text()
    assert f"ECOSYNC_REDIS_URL={redis_url}" in env
    # both positions assets have a history in the instance: the health the sensor and the
    # recovery recorded (the loss and its end), the recovery run's restore
    monkeypatch.setenv("DAGSTER_HOME", str(demo_root / "data"))
    with DagsterInstance.get() as instance:
        health = instance.fetch_materializations(AssetKey("store_sync_positions"), limit=10)
        missing = [
            r.asset_materialization.metadata["stores_missing"].value
            for r in health.records
            if r.asset_materialization is not None
        ]
        assert len(report.rows) in missing and 0 in missing
        restored = instance.get_latest_materialization_event(AssetKey("restored_sync_positions"))
        assert restored is not None and restored.run_id == report.recovery_run_id
    # the stores file it wrote serves exactly the synced ids again: nothing deleted, no new
    re_served = Simulator.from_stores_file(demo_root / "data" / "demo" / "stores.yaml")
    engine = make_engine(f"sqlite:///{demo_root / 'data' / 'demo' / 'orders.db'}")
    try:
        for row in report.rows:
            assert list(re_served.ids(row.store)) == sorted(iter_order_ids(engine, row.store))
    finally:
        engine.dispose()
    readme_command_line_exits_0(demo_root, monkeypatch)


def readme_command_line_exits_0(demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `ecosync` line of the README's "The command line", after the demo, from its
    root, with the demo's stores served again and its .env read (as `ecosync` reads it)."""
    commands = readme_commands("The command line")
    assert commands[0] == ["source", ".venv/bin/activate"], commands[0]
    assert len(commands) > 5 and all(c[0] == "ecosync" for c in commands[1:]), commands
    monkeypatch.chdir(demo_root)
    for name, value in dotenv_values(demo_root / ".env").items():
        monkeypatch.setenv(name, value or "")
    stores_file = demo_root / "data" / "demo" / "stores.yaml"
    port = urlsplit(re.findall(r"base_url: (\S+)", stores_file.read_text())[0]).port
    with SimulatorServer(Simulator.from_stores_file(stores_file), port=port or 0):
        for command in commands[1:]:
            result = CliRunner().invoke(main, command[1:])
            assert result.exit_code == 0, (command, result.output, result.exception)
