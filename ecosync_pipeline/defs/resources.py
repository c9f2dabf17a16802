"""The resources of the code location: one per dependency, each built once per run.

    orders_db    OrdersDatabaseResource  the orders database (an Engine, migrated once)
    ecomanager   EcoManagerResource      the stores file and a client per store
    positions    PositionsResource       the position layers and the fallback chain

An op, asset, check or sensor asks for the ones it uses by parameter, and uses nothing
else: a test substitutes any of them by passing another instance (or a subclass) under
the same key. Dagster builds each resource once per run (and once per sensor tick), so
the recovery job's five steps share one engine, one Redis client and one chain.

Every field defaults to ``None``, meaning "the ECOSYNC_* variable, or its documented
default", read when a run needs it and never at import, so ``dagster dev`` works with no
extra setup. Secrets never pass through resource config: a database password stays
inside ECOSYNC_DATABASE_URL, and each store's token is read from the variable its
``token_env`` names when its client is built. A deployment that wants Dagster to show
where a value comes from can pass ``EnvVar("...")`` for any field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Settings, Store, load_stores
from ecosync_pipeline.ecomanager.budget import shared_budget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.factory import build_backup, build_chain, build_redis
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.storage import make_engine, upgrade_if_behind

ORDERS_DB = "orders_db"
ECOMANAGER = "ecomanager"
POSITIONS = "positions"


class _SharedEngines:
    """One Engine per database URL per process, shared by every resource that uses it.

    Dagster initializes a nested resource (the positions' orders_db) as a copy of its
    own, so without this a sync would open two pools on one database. The engine is
    opened (and the schema brought up to date) by its first user and disposed by its last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, int]] = {}

    def acquire(self, url: str) -> Engine:
        with self._lock:
            engine, users = self._engines.get(url) or (None, 0)
            if engine is None:
                engine = upgrade_if_behind(make_engine(url))
            self._engines[url] = (engine, users + 1)
            return engine

    def acquire_held(self, url: str) -> Engine:
        """The engine of a user that acquired it already."""
        with self._lock:
            return self._engines[url][0]

    def release(self, url: str) -> None:
        with self._lock:
            engine, users = self._engines[url]
            if users > 1:
                self._engines[url] = (engine, users - 1)
                return
            del self._engines[url]
        engine.dispose()


_ENGINES = _SharedEngines()


class OrdersDatabaseResource(ConfigurableResource):
    """The orders database, the truth (layer 3 of the sync positions)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql://... or sqlite:///...); default: "
        "ECOSYNC_DATABASE_URL, else sqlite:///data/ecosync.db. Keep passwords in the "
        "environment: pass EnvVar('ECOSYNC_DATABASE_URL') rather than a literal.",
    )
    _engine_url: str | None = PrivateAttr(default=None)

    @property
    def database_url(self) -> str:
        """The URL in use: this resource's, else the environment's."""
        return self.url or Settings.from_env().database_url

    @property
    def engine(self) -> Engine:
        """The run's engine, opened (and the schema brought up to date) on first use."""
        if self._engine_url is None:
            url = self.database_url
            engine = _ENGINES.acquire(url)
            self._engine_url = url
            return engine
        return _ENGINES.acquire_held(self._engine_url)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine_url is not None:
            _ENGINES.release(self._engine_url)
            self._engine_url = None


class EcoManagerResource(ConfigurableResource):
    """The EcoManager stores: the stores file; each token comes from its store's token_env."""

    stores_file: str | None = Field(
        default=None,
        description="YAML file listing the stores; default: ECOSYNC_STORES_FILE, else "
        "data/stores.yaml. Tokens are never in it: each store names its token variable.",
    )
    budget_redis_url: str | None = Field(
        default=None,
        description="Redis counting each store's rate budget, shared by every process; "
        "default: ECOSYNC_REDIS_URL, else redis://127.0.0.1:6379/0.",
    )

    @property
    def stores_path(self) -> str:
        """The stores file in use: this resource's, else the environment's."""
        return self.stores_file or Settings.from_env().stores_file

    def stores(self) -> list[Store]:
        """The configured stores (parsed once per file version)."""
        return load_stores(self.stores_path)

    def store(self, identifier: str) -> Store:
        """The configured store with this identifier; ConfigError naming the file if absent."""
        stores = self.stores()
        for store in stores:
            if store.identifier == identifier:
                return store
        known = ", ".join(s.identifier for s in stores) or "none"
        raise ConfigError(f"store {identifier} is not in {self.stores_path} (configured: {known})")

    def client(self, store: Store) -> EcoManagerClient:
        """A client for one store, under its shared rate budget; raises MissingToken
        naming the variable when unset."""
        url = self.budget_redis_url or Settings.from_env().redis_url
        return EcoManagerClient.from_store(store, rate_limiter=shared_budget(store, url))

    def clients(self) -> Callable[[Store], EcoManagerClient]:
        """A client factory for the chain's restore_all and verify_all."""
        return self.client


class PositionsResource(ConfigurableResource):
    """The sync positions: Redis (layer 1), the JSON backup (layer 2), the database (3)."""

    redis_url: str | None = Field(
        default=None,
        description="Redis URL; default: ECOSYNC_REDIS_URL, else redis://127.0.0.1:6379/0.",
    )
    backup_path: str | None = Field(
        default=None,
        description="Backup file (a path or an fsspec URL); default: ECOSYNC_BACKUP_PATH, "
        "else data/sync-positions/sync-positions.json.",
    )
    orders_db: OrdersDatabaseResource
    ecomanager: EcoManagerResource
    _chain: PositionChain | None = PrivateAttr(default=None)
    _redis: RedisLayer | None = PrivateAttr(default=None)
    _backup: JsonBackup | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        """The core's Settings: explicit resource values over the ECOSYNC_* environment."""
        base = Settings.from_env()
        return Settings(
            database_url=self.orders_db.database_url,
            redis_url=self.redis_url or base.redis_url,
            stores_file=self.ecomanager.stores_path,
            backup_path=self.backup_path or base.backup_path,
        )

    @property
    def chain(self) -> PositionChain:
        """The run's fallback chain over the three layers, built on first use."""
        if self._chain is None:
            self._chain = build_chain(
                self.settings(), self.ecomanager.stores(), self.orders_db.engine
            )
        return self._chain

    @property
    def redis(self) -> RedisLayer:
        """Layer 1 alone, for a probe that needs neither the database nor the backup."""
        if self._chain is not None:
            return self._chain.redis
        if self._redis is None:
            self._redis = build_redis(self.settings())
        return self._redis

    @property
    def backup(self) -> JsonBackup:
        """Layer 2 alone, for the sensor's read of the generation it recorded."""
        if self._chain is not None:
            return self._chain.backup
        if self._backup is None:
            self._backup = build_backup(self.settings())
        return self._backup

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None


def ecosync_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The three resources for ``settings``, or ones that follow the environment when None."""
    database = OrdersDatabaseResource(url=settings.database_url if settings else None)
    ecomanager = EcoManagerResource(
        stores_file=settings.stores_file if settings else None,
        budget_redis_url=settings.redis_url if settings else None,
    )
    positions = PositionsResource(
        redis_url=settings.redis_url if settings else None,
        backup_path=settings.backup_path if settings else None,
        orders_db=database,
        ecomanager=ecomanager,
    )
    return {ORDERS_DB: database, ECOMANAGER: ecomanager, POSITIONS: positions}
