"""Layer 1 against the real Redis: format, sentinel, TTL, one round trip, degradation."""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis

from ecosync_pipeline.config import validate_store_identifier
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.redis_layer import (
    SENTINEL_KEY,
    UNAVAILABLE,
    RedisLayer,
)
from ecosync_pipeline_tests.test_positions.servers import closed_port_url, hanging_redis


def _position(store: str = "NATUR", page: int = 9081, last: int = 181_601) -> SyncPosition:
    return SyncPosition(
        store=store,
        store_name=f"{store} shop",
        last_page=page,
        first_id=last - 11,
        last_id=last,
        last_order_id=last,
        updated_at=utc_now(),
        source="database",
        per_page=20,
        verified=True,
    )


@pytest.fixture
def layer(redis_url: str) -> RedisLayer:
    return RedisLayer.from_url(redis_url)


def test_redis_layer_writes_original_key_format_without_expiry(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    assert layer.write(_position())
    raw = json.loads(redis_admin.get("ecomanager:pageinfo:NATUR"))
    assert raw["lastPage"] == 9081
    assert raw["firstId"] == 181_590
    assert raw["lastId"] == 181_601
    assert raw["storeName"] == "NATUR shop"
    assert raw["timestamp"].endswith("Z")
    assert raw["lastOrderId"] == 181_601
    assert redis_admin.ttl("ecomanager:pageinfo:NATUR") == -1
    back = layer.read("NATUR")
    assert isinstance(back, SyncPosition)
    assert (back.last_page, back.last_order_id, back.source) == (9081, 181_601, "redis")


def test_redis_layer_reads_key_written_by_original_system(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    redis_admin.set(
        "ecomanager:pageinfo:PURNA",
        json.dumps(
            {
                "lastPage": 9504,
                "firstId": 9490,
                "lastId": 9509,
                "timestamp": "2025-03-01T10:00:00.000Z",
                "storeName": "Purna",
            }
        ),
    )
    position = layer.read("PURNA")
    assert isinstance(position, SyncPosition)
    assert position.last_order_id == 9509  # lastOrderId absent: lastId is the last synced
    assert position.per_page == 20
    assert position.store_name == "Purna"
    assert position.updated_at.year == 2025
    assert not position.verified


def test_redis_layer_ignores_unreadable_key_with_one_warning(
    layer: RedisLayer, redis_admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_admin.set("ecomanager:pageinfo:NATUR", "{not json")
    with caplog.at_level(logging.WARNING):
        assert layer.read("NATUR") is None
        assert layer.read("NATUR") is None
    assert len([r for r in caplog.records if "unreadable" in r.message]) == 1


def test_redis_layer_sentinel_keeps_generation_and_counts_recoveries(
    layer: RedisLayer,
) -> None:
    layer.write(_position("NATUR"))
    first = layer.snapshot(["NATUR"]).sentinel
    assert first is not None and first.epoch == 0
    layer.write(_position("JWLR"), recovery=True)
    second = layer.snapshot(["NATUR", "JWLR"])
    assert second.sentinel is not None
    assert second.sentinel.generation == first.generation
    assert second.sentinel.epoch == 1
    assert set(second.sentinel.stores) == {"NATUR", "JWLR"}
    assert second.sentinel.run_id == second.run_id
    assert not second.restarted


def test_redis_layer_key_expires_with_configured_ttl(redis_url: str) -> None:
    layer = RedisLayer.from_url(redis_url, ttl_seconds=1)
    layer.write(_position())
    assert isinstance(layer.read("NATUR"), SyncPosition)
    time.sleep(1.2)
    snap = layer.snapshot(["NATUR"])
    assert snap.get("NATUR") is None
    assert snap.sentinel is not None and "NATUR" in snap.sentinel.stores  # it was lost


def test_redis_layer_snapshot_is_one_round_trip(
    layer: RedisLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer.write_many([_position(f"S{i}", page=i + 1, last=100 + i) for i in range(50)])
    calls: list[str] = []
    original = redis.client.Pipeline.execute

    def counted(self: redis.client.Pipeline, *args: object, **kw: object) -> object:
        calls.append("pipeline")
        return original(self, *args, **kw)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    monkeypatch.setattr(
        redis.Redis,
        "execute_command",
        lambda *a, **k: pytest.fail("a command outside the pipeline"),
    )
    snap = layer.snapshot([f"S{i}" for i in range(50)] + ["NEVER"])
    assert calls == ["pipeline"]
    assert len(snap.positions) == 50
    assert snap.get("NEVER") is None
    assert snap.run_id


def test_redis_layer_rejects_invalid_store_identifier(layer: RedisLayer) -> None:
    # A key is made of a StoreId only (test_runtime checks the signature): none of this.
    with pytest.raises(ConfigError):
        layer.key(validate_store_identifier("NATUR:*"))


def test_redis_layer_refusing_connections_degrades_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = RedisLayer.from_url(closed_port_url())
    with caplog.at_level(logging.WARNING):
        assert layer.read("NATUR") is UNAVAILABLE
        assert not layer.write(_position())
        assert not layer.snapshot(["NATUR"]).available
        assert layer.read("NATUR") is UNAVAILABLE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].message


def test_redis_layer_hanging_server_costs_one_short_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with hanging_redis() as url:
        layer = RedisLayer.from_url(url, timeout=0.3)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            assert layer.read("NATUR") is UNAVAILABLE
            for _ in range(20):
                assert not layer.write(_position())
            assert layer.read("NATUR") is UNAVAILABLE
        elapsed = time.monotonic() - started
        layer.close()
    assert elapsed < 3.0  # one timeout of 0.3 s; one a call would be 22, 6.6 s
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_redis_layer_tries_again_after_retry_after(redis_url: str) -> None:
    layer = RedisLayer.from_url(closed_port_url(), retry_after=0.0)
    assert layer.read("NATUR") is UNAVAILABLE
    # Pointing the same layer at a live Redis: it is used again at the next call.
    layer.client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert layer.write(_position())
    assert isinstance(layer.read("NATUR"), SyncPosition)


def test_redis_layer_records_restart_then_heals_on_next_write(
    layer: RedisLayer, redis_admin: redis.Redis
) -> None:
    layer.write(_position())
    redis_admin.hset(SENTINEL_KEY, "run_id", "0" * 40)  # as if written before a restart
    assert layer.snapshot(["NATUR"]).restarted
    layer.write(_position())
    assert not layer.snapshot(["NATUR"]).restarted


def test_redis_layer_survives_a_refused_command_in_the_probe(
    layer: RedisLayer, redis_admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    layer.write(_position())
    redis_admin.delete(SENTINEL_KEY)
    redis_admin.set(SENTINEL_KEY, "not a hash")  # HGETALL now fails with WRONGTYPE
    with caplog.at_level(logging.WARNING):
        first = layer.snapshot(["NATUR"])
        second = layer.snapshot(["NATUR"])
    assert first.available and second.available
    assert isinstance(first.get("NATUR"), SyncPosition)
    assert first.sentinel is None
    assert len([r for r in caplog.records if "sentinel" in r.message]) == 1
