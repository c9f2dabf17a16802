"""The wiring from Settings: the layers and the chain as every entry point builds them."""

from __future__ import annotations

from pathlib import Path

from ecosync_pipeline.config import Settings
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.positions.factory import build_chain, client_factory
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline_tests.test_positions.fakes import ListFetcher, store


def test_build_chain_wires_the_three_layers_from_settings(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=sqlite_url,
        redis_url=redis_url,
        stores_file=str(tmp_path / "stores.yaml"),
        backup_path=(tmp_path / "backup" / "positions.json").as_uri(),
    )
    engine = make_engine(sqlite_url)
    migrate(engine)
    chain = build_chain(settings, [store("NATUR")], engine, redis_ttl_seconds=3600)
    try:
        assert chain.redis.ttl_seconds == 3600
        assert chain.backup.location == settings.backup_path
        resolved = chain.get_position("NATUR", ListFetcher(range(1, 50), "NATUR"))
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
