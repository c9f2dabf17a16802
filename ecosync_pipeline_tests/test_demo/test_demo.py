"""`ecosync demo` in its small form: the seed's scenario, asserted from its table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from ecosync_pipeline.lab.bench.recovery import goal_bound
from ecosync_pipeline.lab.demo import run_demo
from ecosync_pipeline.lab.simulator import Simulator
from ecosync_pipeline.storage import iter_order_ids, make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A project root of the demo's own: the demo stores and dagster.yaml, nothing else."""
    (tmp_path / "data").mkdir()
    for name in ("stores.yaml", "dagster.yaml"):
        shutil.copy(ROOT / "data" / name, tmp_path / "data" / name)
    return tmp_path


def test_small_demo_recovers_after_flush_with_nothing_missing_or_duplicated(
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
