"""`ecosync quota` and the quota metadata: calls used and left, read from the real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecosync_pipeline.cli import main
from ecosync_pipeline.config import load_stores
from ecosync_pipeline.ecomanager.budget import quota_metadata, shared_budget

STORES = """stores:
  - identifier: {a}
    name: First
    base_url: https://a.example.test
    token_env: ECOSYNC_TOKEN_A
  - identifier: {b}
    name: Second
    base_url: https://b.example.test
    token_env: ECOSYNC_TOKEN_B
    rate_budget: {{per_second: 2, per_day: 3000}}
"""


@pytest.fixture
def stores_file(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "stores.yaml"
    path.write_text(STORES.format(a="QA", b="QB"), encoding="utf-8")
    monkeypatch.setenv("ECOSYNC_STORES_FILE", str(path))
    monkeypatch.setenv("ECOSYNC_REDIS_URL", redis_url)
    return path


def test_quota_table_shows_calls_used_and_left_in_every_window(
    stores_file: Path, redis_url: str
) -> None:
    first = load_stores(stores_file)[0]
    budget = shared_budget(first, redis_url)
    for _ in range(3):
        budget.acquire()
    result = CliRunner().invoke(main, ["quota"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "store",
        "counted",
        "in",
        "second",
        "minute",
        "hour",
        "day",
        "left",
        "today",
    ]
    row_a = next(line.split() for line in lines if line.startswith("QA"))
    assert row_a[1] == "redis" and row_a[3:] == ["3/40", "3/800", "3/8000", "7,997"]
    row_b = next(line.split() for line in lines if line.startswith("QB"))
    assert row_b[2:] == ["0/2", "0/20", "0/400", "0/3000", "3,000"]


def test_quota_json_and_one_store(stores_file: Path) -> None:
    result = CliRunner().invoke(main, ["quota", "--store", "QB", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["store"] == "QB" and entry["counted_in"] == "redis"
    assert (entry["day_limit"], entry["day_used"], entry["day_left"]) == (3000, 0, 3000)


def test_quota_of_an_unknown_store_fails_naming_it(stores_file: Path) -> None:
    result = CliRunner().invoke(main, ["quota", "--store", "NOPE"])
    assert result.exit_code == 1 and "ConfigError: store NOPE is not in" in result.output


def test_quota_metadata_is_flat_and_counts_calls(stores_file: Path, redis_url: str) -> None:
    second = load_stores(stores_file)[1]
    shared_budget(second, redis_url).acquire()
    meta = quota_metadata(second, redis_url)
    assert meta["rate_budget_counted_in"] == "redis"
    assert (meta["rate_budget_day_used"], meta["rate_budget_day_left"]) == (1, 2999)
    assert set(meta) >= {f"rate_budget_{w}_left" for w in ("second", "minute", "hour", "day")}
