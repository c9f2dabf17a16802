"""The composition root: the parts every entry point gets from Settings, and the one
store lookup (DESIGN, invariant 7: an identifier is parsed where it comes in)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from ecosync_pipeline import storage
from ecosync_pipeline.config import Settings, StoreId
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ConfigError, DatabaseUnavailable
from ecosync_pipeline.mirror.segments import descend
from ecosync_pipeline.positions.codec import position_from_fields
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.runtime import Runtime, build_chain, build_redis, client_factory
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.storage.locks import store_lock
from ecosync_pipeline.storage.ranges import flag_deleted, stored_in_range
from ecosync_pipeline.storage.store_state import read_state, write_state
from ecosync_pipeline.webhooks.health import delivery_health
from ecosync_pipeline.webhooks.inbox import replay
from ecosync_pipeline_tests.test_positions.fakes import ListFetcher, store
from ecosync_pipeline_tests.test_positions.servers import closed_port_url


def _settings(tmp_path: Path, redis_url: str, database_url: str) -> Settings:
    stores = [
        {"identifier": "NATUR", "name": "Natur", "base_url": "http://127.0.0.1:1", "token_env": "T"}
    ]
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": stores}), encoding="utf-8")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        stores_file=str(path),
        backup_path=(tmp_path / "backup" / "positions.json").as_uri(),
    )


def test_build_chain_wires_the_three_layers_from_settings(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, redis_url, sqlite_url)
    engine = make_engine(sqlite_url)
    migrate(engine)
    redis = build_redis(settings, ttl_seconds=3600)
    chain = build_chain(settings, [store("NATUR")], engine, redis=redis)
    try:
        assert chain.redis is redis and redis.ttl_seconds == 3600
        assert chain.backup.location == settings.backup_path
        resolved = chain.get_position(store("NATUR"), ListFetcher(range(1, 50), "NATUR"))
        assert (resolved.source, resolved.position.last_page) == ("calculated", 1)
        assert (tmp_path / "backup" / "positions.json").exists()
    finally:
        chain.close()
        engine.dispose()


def test_client_factory_reads_the_token_when_building() -> None:
    build = client_factory({"TOKEN_NATUR": "a" * 80}, timeout=2.0)
    client = build(store("NATUR"))
    try:
        assert isinstance(client, EcoManagerClient)
        assert client.store.identifier == "NATUR"
    finally:
        client.close()


def test_a_store_named_from_outside_is_parsed_then_found_or_refused_naming_the_file(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    settings = _settings(tmp_path, redis_url, sqlite_url)
    with Runtime(settings) as runtime:
        assert runtime.store("NATUR").name == "Natur"
        with pytest.raises(ConfigError, match="is invalid: use 1 to 32 letters or digits"):
            runtime.store("../../etc/passwd")
        with pytest.raises(
            ConfigError, match=r"store NOPE is not in .*stores.yaml \(configured: NATUR\)"
        ):
            runtime.store("NOPE")
        assert [s.identifier for s in runtime.select([])] == ["NATUR"]


def test_the_redis_probe_opens_neither_the_database_nor_the_backup(
    tmp_path: Path, redis_url: str
) -> None:
    # A database that cannot be reached: the probe (the sensor's) must not need it.
    settings = _settings(tmp_path, redis_url, "postgresql://nobody@127.0.0.1:1/none")
    with Runtime(settings) as runtime:
        read = runtime.redis.read_many(runtime.stores)
        assert read.ok and read.get("NATUR") is None
        assert not (tmp_path / "backup").exists()
        with pytest.raises(DatabaseUnavailable):
            runtime.engine  # noqa: B018


def test_a_store_made_anywhere_holds_a_valid_identifier() -> None:
    with pytest.raises(ConfigError, match="is invalid"):
        store("NATUR'; DROP TABLE orders;--")


# Every function that puts a store identifier into SQL, a Redis key or a file name.
SINKS: list[tuple[Callable[..., Any], str]] = [
    (storage.upsert_orders, "store"),
    (storage.ensure_store, "store"),
    (storage.store_summary, "store"),
    (storage.iter_order_ids, "store"),
    (storage.orders_after, "store"),
    (storage.order_state, "store"),
    (storage.duplicate_count, "store"),
    (store_lock, "store"),
    (stored_in_range, "store"),
    (flag_deleted, "store"),
    (read_state, "store"),
    (write_state, "store"),
    (replay, "store"),
    (delivery_health, "store"),
    (descend, "store"),
    (position_from_fields, "store"),
    (RedisLayer.key, "store"),
]


@pytest.mark.parametrize("sink, parameter", SINKS, ids=lambda s: getattr(s, "__qualname__", s))
def test_identifiers_reach_sql_keys_and_files_only_as_parsed_store_ids(
    sink: Callable[..., Any], parameter: str
) -> None:
    # StoreId is made by validate_store_identifier alone; mypy (strict, in the test
    # command) refuses a plain str where one is expected, so typing these parameters
    # StoreId is what keeps an unparsed identifier out of SQL, keys and file names.
    target = inspect.unwrap(sink)
    assert get_type_hints(target)[parameter] is StoreId, f"{target.__qualname__}({parameter}: ...)"


def test_every_store_shows_unreachable_while_redis_cannot_be_read(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = _settings(tmp_path, closed_port_url(), sqlite_url)
    with Runtime(settings) as runtime:
        report = status_report(runtime.chain)
    assert report.redis_state == "unreachable"
    assert [s.status for s in report.stores] == ["unreachable"]
    assert report.counts == {"unreachable": 1}
