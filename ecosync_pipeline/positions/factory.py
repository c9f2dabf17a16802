"""Building the position layers and the chain from Settings: the one place that wires them.

The sync engine (through ecosync_pipeline.runtime), the CLI, the demo and the Dagster
resources all build their layers here, so a deployment changes the wiring in one spot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseLayer
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.redis_layer import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    RedisLayer,
)


def build_redis(
    settings: Settings,
    *,
    ttl_seconds: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
) -> RedisLayer:
    """Layer 1 on ``settings.redis_url`` (no expiry unless ``ttl_seconds``)."""
    return RedisLayer.from_url(
        settings.redis_url, ttl_seconds=ttl_seconds, timeout=timeout, retry_after=retry_after
    )


def build_backup(settings: Settings) -> JsonBackup:
    """Layer 2 at ``settings.backup_path`` (a path or any fsspec URL)."""
    return JsonBackup(settings.backup_path)


def build_chain(
    settings: Settings,
    stores: Sequence[Store],
    engine: Engine,
    *,
    redis_ttl_seconds: int | None = None,
    redis_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> PositionChain:
    """The three layers over ``engine`` (the orders database), composed for ``stores``.

    Only page-mode stores have a position: a cursor-mode store reads down to the table's
    last id (ecosync_pipeline.sync.cursor), so it has nothing to lose or recover.
    """
    return PositionChain(
        [s for s in stores if s.read_mode == "pages"],
        build_redis(settings, ttl_seconds=redis_ttl_seconds, timeout=redis_timeout),
        build_backup(settings),
        DatabaseLayer(engine),
    )


def cursor_stores(stores: Sequence[Store]) -> list[str]:
    """The stores that keep no position (read_mode: cursor), for what reports on positions."""
    return [s.identifier for s in stores if s.read_mode == "cursor"]


def client_factory(
    environ: Mapping[str, str] | None = None, **options: Any
) -> Callable[[Store], EcoManagerClient]:
    """A function giving each store its API client (for PositionChain.restore_all).

    Tokens are read from the environment only when a client is built, so a store whose
    variable is unset fails alone (MissingToken) and the others go on.
    """

    def build(store: Store) -> EcoManagerClient:
        return EcoManagerClient.from_store(store, environ, **options)

    return build
