"""Loss detection and position health on the real Redis and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from ecosync_pipeline.positions.chain import PositionChain, classify
from ecosync_pipeline.positions.database_layer import DatabaseLayer, position_from_summary
from ecosync_pipeline.positions.health import cache_health, status_report
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.loss import detect
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.redis_layer import SENTINEL_KEY, RedisLayer
from ecosync_pipeline.storage import StoreSummary, make_engine, migrate
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.test_positions.fakes import fill_orders, store
from ecosync_pipeline_tests.test_positions.servers import closed_port_url

STORES = ["NATUR", "PURNA", "DILST"]


def _position(sid: str, last: int = 100, page: int = 5) -> SyncPosition:
    return SyncPosition(
        store=sid,
        store_name=sid,
        last_page=page,
        first_id=last - 19,
        last_id=last,
        last_order_id=last,
        updated_at=utc_now(),
        source="database",
        verified=True,
    )


@pytest.fixture
def layer(redis_url: str) -> Iterator[RedisLayer]:
    layer = RedisLayer.from_url(redis_url)
    yield layer
    layer.close()


def _flushdb(redis_admin: redis.Redis) -> None:
    redis_admin.flushdb()
    redis_admin.set(REDIS_MARKER, "1")


def test_detect_cache_loss_is_quiet_on_a_fresh_redis(layer: RedisLayer) -> None:
    report = detect(layer.read_many(STORES), STORES)
    assert report.redis_state == "ok"
    assert report.event_id is None and not report.lost


def test_detect_cache_loss_same_flush_same_event_new_flush_new_event(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    layer.write_many([_position(s) for s in STORES])
    healthy = detect(layer.read_many(STORES), STORES)
    assert healthy.redis_state == "ok" and healthy.event_id is None
    cursor = healthy.cursor
    assert cursor == healthy.generation

    _flushdb(redis_admin)
    first = detect(layer.read_many(STORES), STORES, cursor=cursor)
    again = detect(layer.read_many(STORES), STORES, cursor=first.cursor)
    assert first.flushed and first.lost
    assert set(first.missing) == set(STORES)
    assert first.event_id == again.event_id == f"flushed:{cursor}"

    # The recovery writes positions again: a new generation, but the same event.
    layer.write_many([_position(s) for s in STORES], recovery=True)
    after_restore = detect(layer.read_many(STORES), STORES, cursor=again.cursor)
    assert after_restore.event_id == first.event_id
    # ... which that write mended: nothing is left to recover.
    assert after_restore.mended and not first.mended and not again.mended
    settled = detect(layer.read_many(STORES), STORES, cursor=after_restore.cursor)
    assert settled.redis_state == "ok" and settled.event_id is None

    _flushdb(redis_admin)
    second = detect(layer.read_many(STORES), STORES, cursor=settled.cursor)
    assert second.flushed
    assert second.event_id is not None and second.event_id != first.event_id

    # A sync's write recreating the sentinel mends nothing: a loss of its own.
    layer.write(_position("NATUR"))
    recreated = detect(layer.read_many(STORES), STORES, cursor=second.cursor)
    assert recreated.flushed and not recreated.mended


def test_detect_cache_loss_is_not_mended_by_a_recovery_that_left_stores_without_a_key(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    layer.write_many([_position(s) for s in STORES])
    cursor = detect(layer.read_many(STORES), STORES).cursor
    _flushdb(redis_admin)
    layer.write(_position("NATUR"), recovery=True)  # the other two failed
    summaries = {s: StoreSummary(s, 100, 100) for s in STORES}
    partial = detect(layer.read_many(STORES), STORES, cursor=cursor, summaries=summaries)
    assert partial.flushed and not partial.mended
    assert set(partial.missing) == {"PURNA", "DILST"}


def test_detect_cache_loss_sees_flush_without_cursor_when_database_has_orders(
    layer: RedisLayer,
) -> None:
    summaries = {"NATUR": StoreSummary("NATUR", 181_601, 176_000)}
    report = detect(layer.read_many(STORES), STORES, summaries=summaries)
    assert report.flushed
    assert report.missing == ("NATUR",)
    assert report.event_id is not None and report.event_id.startswith("flushed:run-")
    assert detect(layer.read_many(STORES), STORES, summaries=summaries).event_id == report.event_id


def test_detect_cache_loss_names_deleted_key_once_until_recovered(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    layer.write_many([_position(s) for s in STORES])
    cursor = detect(layer.read_many(STORES), STORES).cursor
    redis_admin.delete("ecomanager:pageinfo:PURNA")
    first = detect(layer.read_many(STORES), STORES, cursor=cursor)
    again = detect(layer.read_many(STORES), STORES, cursor=first.cursor)
    assert first.redis_state == "ok" and first.missing == ("PURNA",)
    assert first.event_id is not None and first.event_id == again.event_id

    layer.write(_position("PURNA"), recovery=True)
    assert detect(layer.read_many(STORES), STORES, cursor=again.cursor).event_id is None
    redis_admin.delete("ecomanager:pageinfo:PURNA")
    later = detect(layer.read_many(STORES), STORES, cursor=again.cursor)
    assert later.missing == ("PURNA",)
    assert later.event_id is not None and later.event_id != first.event_id


def test_detect_cache_loss_reports_restart_with_stable_id(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    layer.write_many([_position(s) for s in STORES])
    redis_admin.hset(SENTINEL_KEY, "run_id", "f" * 40)  # the sentinel predates a restart
    first = detect(layer.read_many(STORES), STORES, cursor=None)
    again = detect(layer.read_many(STORES), STORES, cursor=first.cursor)
    assert first.restarted and not first.lost
    assert first.event_id is not None and first.event_id == again.event_id
    layer.write(_position("NATUR"))  # the next write records the new run_id
    assert detect(layer.read_many(STORES), STORES, cursor=again.cursor).redis_state == "ok"


def test_detect_cache_loss_reports_unreachable_and_keeps_cursor() -> None:
    layer = RedisLayer.from_url(closed_port_url())
    report = detect(layer.read_many(STORES), STORES, cursor="abc123")
    assert report.unreachable and report.event_id is None
    assert report.cursor == "abc123"


def test_probe_of_a_thousand_stores_is_one_fast_round_trip(layer: RedisLayer) -> None:
    stores = [f"S{i:04d}" for i in range(1000)]
    layer.write_many([_position(s, last=1000 + i) for i, s in enumerate(stores)])
    started = time.perf_counter()
    snap = layer.read_many(stores)
    report = detect(snap, stores, cursor=snap.sentinel.generation if snap.sentinel else None)
    elapsed = time.perf_counter() - started
    assert len(snap.positions) == 1000 and report.redis_state == "ok"
    assert elapsed < 0.5


# -- statuses ------------------------------------------------------------------------------


def _truth(summary: StoreSummary | None) -> SyncPosition | None:
    """The database's position for store S with these orders (None: no orders at all)."""
    return position_from_summary(store("S"), summary) if summary else None


def test_classify_covers_every_status() -> None:
    summary = _truth(StoreSummary("S", 100, 90))
    good = _position("S", last=100)
    assert classify(good, summary) == "healthy"
    assert classify(None, summary) == "missing"
    assert (
        classify(replace(good, last_page=1, last_id=None, last_order_id=None), summary) == "reset"
    )
    assert classify(replace(good, last_order_id=80), summary) == "stale"
    assert classify(replace(good, last_order_id=120), summary) == "ahead"
    assert classify(None, None) == "calculated"
    assert classify(SyncPosition.first_sync("S", "S"), _truth(StoreSummary("S", None, 0))) == (
        "calculated"
    )
    assert classify(good, None) == "ahead"


def test_cache_health_is_share_of_healthy_stores() -> None:
    assert cache_health(["healthy", "healthy", "missing", "stale"]) == 0.5
    assert cache_health(["calculated", "healthy"]) == 1.0
    assert cache_health([]) == 1.0


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_status_report_per_store_and_overall(
    engine: Engine, layer: RedisLayer, redis_admin: redis.Redis, tmp_path: Path
) -> None:
    for sid in ("NATUR", "PURNA", "DILST", "JWLR", "OLD"):
        fill_orders(engine, sid, range(1, 101))
    chain = PositionChain(
        [store(s) for s in ("NATUR", "PURNA", "DILST", "JWLR", "OLD", "NEW")],
        layer,
        JsonBackup(tmp_path / "b.json"),
        DatabaseLayer(engine),
    )
    layer.write_many([_position("NATUR"), _position("DILST", last=90), _position("JWLR", last=150)])
    redis_admin.set(
        "ecomanager:pageinfo:OLD", json.dumps({"lastPage": 1, "firstId": None, "lastId": None})
    )
    chain.backup.write_many([_position("PURNA"), _position("NATUR", last=90)])
    report = status_report(chain)
    by_store = {s.store: s for s in report.stores}
    assert {k: v.status for k, v in by_store.items()} == {
        "NATUR": "healthy",
        "PURNA": "missing",
        "DILST": "stale",
        "JWLR": "ahead",
        "OLD": "reset",
        "NEW": "calculated",
    }
    assert by_store["PURNA"].json_status == "healthy"
    assert by_store["NATUR"].json_status == "stale"
    assert by_store["NATUR"].db_last_order_id == 100 and by_store["NATUR"].db_order_count == 100
    assert report.cache_health == pytest.approx(2 / 6)
    assert report.redis_state == "ok"
    assert "PURNA" in report.loss.missing
    as_json = json.loads(json.dumps(report.as_dict()))
    assert as_json["stores"][0]["redis"]["last_page"] == 5
