"""The chain end to end: the simulator over real HTTP, real Redis and PostgreSQL, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from ecosync_pipeline.cli import main
from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.locator import fetch_bound
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseLayer, page_hint
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.helpers import ecosync_environ
from ecosync_pipeline_tests.test_positions.fakes import fill_orders

# Identifiers of their own: the client's rate limiter is shared per store identifier.
SPECS = [
    StoreSpec("PXNATUR", count=12_000, gap_rate=0.03),
    StoreSpec("PXPURNA", first_id=500_000, count=3_000, stride=7, gap_rate=0.03),
    StoreSpec("PXEMPTY", count=0),
]


@dataclass
class Live:
    simulator: Simulator
    chain: PositionChain
    engine: Engine
    stores: dict[str, Store]
    synced: dict[str, int]

    def client(self, store: Store) -> EcoManagerClient:
        return EcoManagerClient(
            store,
            self.simulator.token(store.identifier),
            rate_limiter=RateLimiter(1000.0),
            max_retries=0,
        )

    def truth(self, sid: str) -> int:
        page = self.simulator.page_of(sid, self.synced[sid])
        assert page is not None
        return page


@pytest.fixture
def live(simulator: Simulator, redis_url: str, postgres_url: str, tmp_path: Path) -> Iterator[Live]:
    simulator.configure(SPECS)
    engine = make_engine(postgres_url)
    migrate(engine)
    stores = {s.identifier: simulator.as_store(s.identifier) for s in SPECS}
    synced: dict[str, int] = {}
    for sid, keep in (("PXNATUR", 10_000), ("PXPURNA", 2_500)):
        ids = list(simulator.ids(sid))[:keep]
        fill_orders(engine, sid, ids)
        synced[sid] = ids[-1]
    chain = PositionChain(
        list(stores.values()),
        RedisLayer.from_url(redis_url),
        JsonBackup(tmp_path / "sync-positions.json"),
        DatabaseLayer(engine),
    )
    try:
        yield Live(simulator, chain, engine, stores, synced)
    finally:
        chain.close()
        engine.dispose()


def test_database_recovery_over_http_lands_on_exact_page_in_bounded_calls(live: Live) -> None:
    for sid, count in (("PXNATUR", 10_000), ("PXPURNA", 2_500)):
        with live.client(live.stores[sid]) as client:
            resolved = live.chain.get_position(live.stores[sid], client)
            assert resolved.source == "database"
            assert resolved.position.last_page == live.truth(sid)
            assert resolved.fetches == client.stats.total
            assert client.stats.total <= fetch_bound(page_hint(count, 20), live.truth(sid))


def test_flushed_redis_recovers_from_json_with_one_call_then_deletions_are_followed(
    live: Live, redis_admin: redis.Redis
) -> None:
    sid = "PXNATUR"
    with live.client(live.stores[sid]) as client:
        live.chain.get_position(live.stores[sid], client)  # from the database; writes both layers
    redis_admin.flushdb()
    redis_admin.set(REDIS_MARKER, "1")
    with live.client(live.stores[sid]) as client:
        resolved = live.chain.get_position(live.stores[sid], client)
        assert (resolved.source, client.stats.total) == ("json", 1)
    # Orders deleted before the target shift it 3 pages back: verification follows it.
    before = [i for i in live.simulator.ids(sid) if i < live.synced[sid]][-2000:-1900]
    live.simulator.delete_orders(sid, before[:60])
    with live.client(live.stores[sid]) as client:
        moved = live.chain.get_position(live.stores[sid], client)
        assert moved.moved and moved.position.last_page == live.truth(sid)
        assert client.stats.total <= fetch_bound(resolved.position.last_page, live.truth(sid))


def test_restore_all_over_http_restores_every_store(live: Live) -> None:
    reports = {r.store: r for r in live.chain.restore_all(live.client)}
    assert reports["PXNATUR"].after is not None
    assert reports["PXNATUR"].after.last_page == live.truth("PXNATUR")
    assert reports["PXPURNA"].after is not None
    assert reports["PXPURNA"].after.last_page == live.truth("PXPURNA")
    assert reports["PXEMPTY"].restored_from == "calculated"
    assert all(r.error is None for r in reports.values())


def _stores_yaml(path: Path, live: Live) -> None:
    lines = ["stores:"]
    for store in live.stores.values():
        lines += [
            f"  - identifier: {store.identifier}",
            f"    name: {store.name}",
            f"    base_url: {store.base_url}",
            f"    token_env: {store.token_env}",
            "    requests_per_second: 1000",
        ]
    path.write_text("\n".join(lines) + "\n")


def _cli_environ(live: Live, redis_url: str, postgres_url: str, tmp_path: Path) -> dict[str, str]:
    """A stores file of the live stores, and the variables the CLI needs to reach them and
    the test's databases (every store's token set)."""
    stores_file = tmp_path / "stores.yaml"
    _stores_yaml(stores_file, live)
    return {
        **ecosync_environ(postgres_url, redis_url, stores_file, tmp_path / "cli-backup.json"),
        **{s.token_env: live.simulator.token(s.identifier) for s in live.stores.values()},
    }


def test_cli_positions_status_and_restore(
    live: Live, redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    env = _cli_environ(live, redis_url, postgres_url, tmp_path)
    runner = CliRunner()
    status = runner.invoke(main, ["positions", "status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    before = json.loads(status.output)
    assert {s["store"]: s["status"] for s in before["stores"]} == {
        "PXNATUR": "missing",
        "PXPURNA": "missing",
        "PXEMPTY": "calculated",
    }
    assert before["cache_health"] == pytest.approx(1 / 3)

    restore = runner.invoke(main, ["positions", "restore"], env=env)
    assert restore.exit_code == 0, restore.output
    assert "PXNATUR" in restore.output and "database" in restore.output

    table = runner.invoke(main, ["positions", "status"], env=env)
    assert table.exit_code == 0, table.output
    assert "cache health: 100%" in table.output
    assert "missing" not in table.output


def test_cli_restore_reports_failing_store_and_exits_one(
    live: Live, redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    env = _cli_environ(live, redis_url, postgres_url, tmp_path)
    env.pop(live.stores["PXPURNA"].token_env)  # that store's token variable is unset
    result = CliRunner().invoke(main, ["positions", "restore"], env=env)
    assert result.exit_code == 1
    assert "MissingToken" in result.output
    assert "1 store(s) not restored: PXPURNA" in result.output
