"""The fallback chain on the real Redis and PostgreSQL, with fake page fetchers.

Each scenario: the orders database holds a store's orders up to a last synced id; the
API (a ListFetcher) serves those and some newer ones. The right answer is always the
resume page of the database's last id.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from ecosync_pipeline.config import Store, find_store
from ecosync_pipeline.ecomanager.locator import fetch_bound
from ecosync_pipeline.errors import ApiUnavailable
from ecosync_pipeline.positions.chain import USABLE, PositionChain, classify
from ecosync_pipeline.positions.database_layer import (
    DatabaseLayer,
    page_hint,
    position_from_summary,
)
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.storage import StoreSummary, make_engine, migrate
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.test_positions.fakes import (
    FailingFetcher,
    ListFetcher,
    fill_orders,
    ids_with_gaps,
    resume_page,
    store,
)
from ecosync_pipeline_tests.test_positions.servers import closed_port_url, hanging_redis


@dataclass
class World:
    """A chain over real services, and the API and truth of each store."""

    chain: PositionChain
    api: dict[str, ListFetcher]
    synced: dict[str, int | None]
    backup_path: Path
    redis_url: str

    def store(self, sid: str) -> Store:
        return find_store(self.chain.stores, sid, "the test's stores")

    def truth(self, sid: str) -> int:
        per_page = self.store(sid).per_page
        return resume_page(self.api[sid].ids, self.synced[sid], per_page)

    def good_position(self, sid: str, source: str = "redis") -> SyncPosition:
        """The exact position a finished sync would have written."""
        page_no = self.truth(sid)
        page = self.api[sid].fetch_page(page_no, self.store(sid).per_page)
        self.api[sid].calls.clear()
        return SyncPosition(
            store=sid,
            store_name=f"{sid} shop",
            last_page=page_no,
            first_id=page.first_id,
            last_id=page.last_id,
            last_order_id=self.synced[sid],
            updated_at=utc_now(),
            source=source,
            per_page=self.store(sid).per_page,  # type: ignore[arg-type]
            verified=True,
        )

    def layer_json(self) -> dict[str, object]:
        return json.loads(self.backup_path.read_text())["stores"]  # type: ignore[no-any-return]


def _build(
    redis_url: str, postgres_url: str, tmp_path: Path, redis_layer: RedisLayer | None = None
) -> World:
    engine = make_engine(postgres_url)
    migrate(engine)
    natur = ids_with_gaps(3000)  # gaps every 7th id
    purna = ids_with_gaps(1500, start=500_000, every=3)  # ids far from 1
    dilst = ids_with_gaps(900, start=40, every=11)
    api = {
        "NATUR": ListFetcher(natur, "NATUR"),
        "PURNA": ListFetcher(purna, "PURNA"),
        "DILST": ListFetcher(dilst, "DILST", per_page=100),
        "MGSTR": ListFetcher([], "MGSTR"),
    }
    synced: dict[str, int | None] = {
        "NATUR": natur[2700],
        "PURNA": purna[1234],
        "DILST": dilst[-1],
        "MGSTR": None,
    }
    fill_orders(engine, "NATUR", natur[:2701])
    fill_orders(engine, "PURNA", purna[:1235])
    fill_orders(engine, "DILST", dilst)
    stores = [store("NATUR"), store("PURNA"), store("DILST", per_page=100), store("MGSTR")]
    backup_path = tmp_path / "sync-positions.json"
    chain = PositionChain(
        stores,
        redis_layer or RedisLayer.from_url(redis_url),
        JsonBackup(backup_path),
        DatabaseLayer(engine),
    )
    return World(chain, api, synced, backup_path, redis_url)


@pytest.fixture
def world(redis_url: str, postgres_url: str, tmp_path: Path) -> Iterator[World]:
    w = _build(redis_url, postgres_url, tmp_path)
    try:
        yield w
    finally:
        w.chain.close()
        w.chain.database.engine.dispose()


def _seed_all(world: World) -> None:
    """Every store synced: Redis and the backup hold exact positions."""
    positions = [world.good_position(s) for s in ("NATUR", "PURNA", "DILST")]
    world.chain.redis.write_many(positions)
    world.chain.backup.write_many(positions)


def _flushdb(redis_admin: redis.Redis) -> None:
    redis_admin.flushdb()
    redis_admin.set(REDIS_MARKER, "1")


# -- the three paths ------------------------------------------------------------------


def test_chain_uses_redis_position_with_one_verification_fetch(world: World) -> None:
    _seed_all(world)
    world.chain.backup.write(replace(world.good_position("NATUR"), last_page=2))  # not read
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.source == "redis"
    assert resolved.position.last_page == world.truth("NATUR")
    assert resolved.page is not None and world.synced["NATUR"] in resolved.page.ids
    assert resolved.fetches == 1 == world.api["NATUR"].fetches
    assert [o.verdict for o in resolved.trail] == ["used"]


def test_chain_leaves_the_backup_unread_while_redis_serves(world: World) -> None:
    _seed_all(world)
    world.backup_path.write_bytes(b"not json at all")  # read, it would be moved aside
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.source == "redis"
    assert world.chain.backup.last_quarantined is None  # type: ignore[attr-defined]
    assert world.backup_path.read_bytes() == b"not json at all"


def test_chain_falls_back_to_json_and_restores_redis(
    world: World, redis_admin: redis.Redis
) -> None:
    _seed_all(world)
    redis_admin.delete("ecomanager:pageinfo:PURNA")
    resolved = world.chain.get_position(world.store("PURNA"), world.api["PURNA"])
    assert resolved.source == "json"
    assert resolved.position.verified
    assert resolved.position.last_page == world.truth("PURNA")
    assert resolved.fetches == 1
    cached = world.chain.redis.read("PURNA")
    assert isinstance(cached, SyncPosition) and cached.last_page == world.truth("PURNA")


def test_chain_falls_back_to_database_and_writes_both_layers(world: World) -> None:
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.source == "database"
    assert resolved.position.last_page == world.truth("NATUR")
    assert [(o.layer, o.verdict) for o in resolved.trail] == [
        ("redis", "absent"),
        ("json", "absent"),
        ("database", "used"),
    ]
    hint = page_hint(2701, 20)
    assert resolved.fetches <= fetch_bound(hint, world.truth("NATUR"))
    assert world.layer_json()["NATUR"]["lastPage"] == world.truth("NATUR")  # type: ignore[index]
    cached = world.chain.redis.read("NATUR")
    assert isinstance(cached, SyncPosition) and cached.last_order_id == world.synced["NATUR"]


def test_chain_first_sync_of_store_without_orders_is_page_one(world: World) -> None:
    resolved = world.chain.get_position(world.store("MGSTR"), world.api["MGSTR"])
    assert (resolved.position.last_page, resolved.source) == (1, "calculated")
    assert resolved.page is not None and resolved.page.number == 1


# -- Redis losses ------------------------------------------------------------------------


def test_chain_recovers_every_store_from_json_after_flushdb(
    world: World, redis_admin: redis.Redis
) -> None:
    _seed_all(world)
    _flushdb(redis_admin)
    for sid in ("NATUR", "PURNA", "DILST"):
        resolved = world.chain.get_position(world.store(sid), world.api[sid])
        assert resolved.source == "json"
        assert resolved.position.last_page == world.truth(sid)
        assert resolved.fetches == 1


def test_chain_rejects_key_reset_to_page_one(world: World, redis_admin: redis.Redis) -> None:
    _seed_all(world)
    redis_admin.set(
        "ecomanager:pageinfo:NATUR",
        json.dumps(
            {
                "lastPage": 1,
                "firstId": None,
                "lastId": None,
                "timestamp": "2025-01-01T00:00:00Z",
                "storeName": "NATUR shop",
            }
        ),
    )
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.trail[0].verdict == "reset"
    assert resolved.source == "database"
    assert resolved.position.last_page == world.truth("NATUR")


def test_chain_recovers_key_expired_by_ttl(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    world = _build(redis_url, postgres_url, tmp_path, RedisLayer.from_url(redis_url, ttl_seconds=1))
    try:
        _seed_all(world)
        time.sleep(1.2)
        resolved = world.chain.get_position(world.store("PURNA"), world.api["PURNA"])
        assert resolved.source == "json"
        assert resolved.position.last_page == world.truth("PURNA")
    finally:
        world.chain.close()


@pytest.mark.parametrize("failure", ["refused", "hanging"])
def test_chain_runs_from_json_when_redis_is_down(
    failure: str,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with hanging_redis() as hang_url:
        url = closed_port_url() if failure == "refused" else hang_url
        world = _build(redis_url, postgres_url, tmp_path, RedisLayer.from_url(url, timeout=0.3))
        seeded = [world.good_position(s) for s in ("NATUR", "PURNA")]
        world.chain.backup.write_many(seeded)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            first = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
            second = world.chain.get_position(world.store("PURNA"), world.api["PURNA"])
            saved = world.chain.save(first.position)
        elapsed = time.monotonic() - started
        world.chain.close()
    assert (first.source, second.source) == ("json", "json")
    assert first.trail[0].verdict == "unavailable"
    assert first.position.last_page == world.truth("NATUR")
    assert (saved.redis, saved.json) == (False, True)
    assert elapsed < 2.0
    redis_warnings = [r for r in caplog.records if "redis" in r.name and r.levelno >= 30]
    assert len(redis_warnings) == 1


# -- backup file states ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"version": "1.0.0", "timestamp": "2025',
        b'{"version": "2.0.0", "stores": {}}',
        b"not json at all",
    ],
    ids=["empty", "truncated", "unknown-version", "not-json"],
)
def test_chain_skips_unreadable_backup_to_database(world: World, content: bytes) -> None:
    world.backup_path.write_bytes(content)
    resolved = world.chain.get_position(world.store("PURNA"), world.api["PURNA"])
    assert resolved.source == "database"
    assert resolved.position.last_page == world.truth("PURNA")
    quarantined = world.chain.backup.last_quarantined  # type: ignore[attr-defined]
    assert quarantined is not None and quarantined.moved_to is not None
    assert Path(quarantined.moved_to).read_bytes() == content
    assert set(world.layer_json()) == {"PURNA"}  # a fresh file was written


def test_chain_goes_to_database_when_backup_cannot_be_read_or_written(world: World) -> None:
    world.backup_path.mkdir()  # a folder where the file should be: reads and writes fail
    resolved = world.chain.get_position(world.store("PURNA"), world.api["PURNA"])
    assert resolved.source == "database"
    assert resolved.trail[1].verdict == "unavailable"
    assert resolved.position.last_page == world.truth("PURNA")
    saved = world.chain.save(resolved.position)
    assert (saved.redis, saved.json) == (True, False)


def test_chain_uses_backup_written_by_original_system(world: World) -> None:
    good = world.good_position("NATUR")
    world.backup_path.write_text(
        json.dumps(
            {
                "version": "1.0.0",
                "timestamp": "2025-03-01T10:00:00.000Z",
                "stores": {
                    "NATUR": {
                        "storeIdentifier": "NATUR",
                        "storeName": "Natural DZ",
                        "lastPage": good.last_page,
                        "lastOrderId": good.last_order_id,
                        "firstId": good.first_id,
                        "lastId": good.last_id,
                        "timestamp": "2025-03-01T10:00:00.000Z",
                        "source": "redis",
                    }
                },
            }
        )
    )
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.source == "json"
    assert resolved.position.last_page == good.last_page
    assert resolved.fetches == 1


# -- trust rules -----------------------------------------------------------------------


def test_chain_never_uses_position_ahead_of_database(world: World) -> None:
    good = world.good_position("NATUR")
    api_ids = world.api["NATUR"].ids
    ahead = replace(
        good, last_page=good.last_page + 10, last_order_id=api_ids[2900], last_id=api_ids[2900]
    )
    world.chain.redis.write(ahead)
    world.chain.backup.write(ahead)
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.trail[0].verdict == "ahead"
    assert resolved.source == "database"
    assert resolved.position.last_order_id == world.synced["NATUR"]
    assert resolved.position.last_page == world.truth("NATUR")


def test_chain_stale_position_defers_to_database(world: World) -> None:
    stale = replace(world.good_position("NATUR"), last_page=3, last_order_id=60, last_id=60)
    world.chain.redis.write(stale)
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.trail[0].verdict == "stale"
    assert resolved.position.last_page == world.truth("NATUR")


def test_chain_corrects_json_position_with_wrong_page(world: World) -> None:
    wrong = replace(world.good_position("NATUR"), last_page=world.truth("NATUR") - 17)
    world.chain.backup.write(wrong)
    resolved = world.chain.get_position(world.store("NATUR"), world.api["NATUR"])
    assert resolved.source == "json"
    assert resolved.moved
    assert resolved.position.last_page == world.truth("NATUR")
    assert resolved.fetches <= fetch_bound(wrong.last_page, world.truth("NATUR"))
    assert world.layer_json()["NATUR"]["lastPage"] == world.truth("NATUR")  # type: ignore[index]
    cached = world.chain.redis.read("NATUR")
    assert isinstance(cached, SyncPosition) and cached.last_page == world.truth("NATUR")


def test_chain_converts_position_taken_with_another_page_size(world: World) -> None:
    # DILST syncs 100 a page now; the backup still holds a position taken at 20 a page.
    ids = world.api["DILST"].ids
    page20 = resume_page(ids, world.synced["DILST"], 20)
    old = SyncPosition(
        store="DILST",
        store_name="DILST shop",
        last_page=page20,
        first_id=None,
        last_id=ids[-1],
        last_order_id=ids[-1],
        updated_at=utc_now(),
        source="json",
        per_page=20,
    )
    world.chain.backup.write(old)
    resolved = world.chain.get_position(world.store("DILST"), world.api["DILST"])
    assert resolved.position.per_page == 100
    assert resolved.position.last_page == world.truth("DILST")
    assert resolved.fetches <= 2


def test_classify_compares_with_database_last_id() -> None:
    base = SyncPosition("S", "S", 5, 81, 100, 100, utc_now(), "redis")
    truth = position_from_summary(store("S"), StoreSummary("S", 100, 95))
    assert classify(base, truth) == "healthy" and "healthy" in USABLE
    assert classify(replace(base, last_order_id=101), truth) == "ahead"
    assert classify(replace(base, last_order_id=99), truth) == "stale"
    assert classify(replace(base, last_order_id=None, last_id=None), truth) == "reset"
    assert classify(base, None) == "ahead"
    first = SyncPosition.first_sync("S", "S")
    assert classify(first, None) == "calculated" and "calculated" in USABLE


# -- save and restore_all ------------------------------------------------------------------


def test_chain_save_writes_both_layers(world: World) -> None:
    result = world.chain.save(world.good_position("PURNA"))
    assert (result.redis, result.json) == (True, True)
    assert "PURNA" in world.layer_json()
    assert isinstance(world.chain.redis.read("PURNA"), SyncPosition)


def test_restore_all_recovers_each_store_from_the_right_layer(
    world: World, redis_admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.chain.redis.write(world.good_position("NATUR"))  # Redis only
    world.chain.backup.write(world.good_position("PURNA"))  # backup only
    # DILST: nothing cached, database only; MGSTR: no orders, first sync.
    world.chain.stores.append(store("JWLR"))
    fetchers = {
        **world.api,
        "JWLR": FailingFetcher(
            ApiUnavailable("store JWLR: page 1: 503 after every retry", store="JWLR", page=1)
        ),
    }
    fill_orders(world.chain.database.engine, "JWLR", range(1, 50))
    pipelines: list[bool] = []
    original = redis.client.Pipeline.execute

    def counted(self: redis.client.Pipeline, *args: object, **kw: object) -> object:
        pipelines.append(self.transaction)
        return original(self, *args, **kw)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    reports = {r.store: r for r in world.chain.restore_all(fetchers)}
    assert pipelines.count(True) == 1  # every position written in one MULTI/EXEC
    assert reports["NATUR"].restored_from == "redis"
    assert reports["PURNA"].restored_from == "json"
    assert reports["DILST"].restored_from == "database"
    assert reports["MGSTR"].restored_from == "calculated"
    assert reports["JWLR"].error is not None and "ApiUnavailable" in reports["JWLR"].error
    assert reports["JWLR"].after is None
    assert reports["PURNA"].before.redis is None
    assert reports["PURNA"].before.json is not None
    for sid in ("NATUR", "PURNA", "DILST"):
        report = reports[sid]
        assert report.ok and report.after is not None
        assert report.after.last_page == world.truth(sid)
        assert report.api_calls == world.api[sid].fetches
        cached = world.chain.redis.read(sid)
        assert isinstance(cached, SyncPosition) and cached.last_page == world.truth(sid)
    assert set(world.layer_json()) == {"NATUR", "PURNA", "DILST", "MGSTR"}


def test_restore_all_closes_fetchers_it_built(world: World) -> None:
    built: list[ListFetcher] = []

    def factory(s: object) -> ListFetcher:
        fetcher = world.api[s.identifier]  # type: ignore[attr-defined]
        built.append(fetcher)
        return fetcher

    reports = world.chain.restore_all(factory)
    assert all(r.ok for r in reports)
    assert built and all(f.closed for f in built)
