"""`ecosync reconcile` and `ecosync refresh-statuses` on the configured stores."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ecosync_pipeline.cli import main
from ecosync_pipeline_tests.helpers import World


def _env(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    s = world.settings
    monkeypatch.setenv("ECOSYNC_DATABASE_URL", s.database_url)
    monkeypatch.setenv("ECOSYNC_REDIS_URL", s.redis_url)
    monkeypatch.setenv("ECOSYNC_STORES_FILE", s.stores_file)
    monkeypatch.setenv("ECOSYNC_BACKUP_PATH", s.backup_path)


def test_reconcile_prints_what_it_checked_found_and_fixed_and_exits_0(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(world, monkeypatch)
    with world.open() as rt:
        rt.sync("SHOP")
    gone = world.simulator.delete_random("SHOP", 3)
    runner = CliRunner()
    first = runner.invoke(main, ["reconcile", "--store", "SHOP", "--max-calls", "5"])
    assert first.exit_code == 0, first.output
    header = first.output.splitlines()[0]
    for column in ("ranges checked", "calls", "missing", "fetched", "flagged deleted", "updated"):
        assert column in header
    rest = runner.invoke(main, ["reconcile", "--store", "SHOP", "--json"])
    assert rest.exit_code == 0, rest.output
    (row,) = json.loads(rest.output)
    assert row["sweep_complete"] and row["low"] == 0
    flagged = int(first.output.splitlines()[2].split()[6]) + row["flagged_deleted"]
    assert flagged == len(gone)


def test_refresh_statuses_reports_the_open_orders_before_and_after(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(world, monkeypatch)
    with world.open() as rt:
        rt.sync("SHOP")
    out = CliRunner().invoke(main, ["refresh-statuses", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["open_before"] == row["open_after"] > 0
    assert row["updated"] == 0 and row["api_calls"] == row["pages"]


def test_reconcile_of_an_unknown_store_fails_naming_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(world, monkeypatch)
    out = CliRunner().invoke(main, ["reconcile", "--store", "NOPE"])
    assert out.exit_code == 1
    assert "ConfigError: store NOPE" in out.output
