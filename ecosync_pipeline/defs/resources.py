"""The resources of the code location: thin wrappers of the composition root (runtime.py).

    orders_db    OrdersDatabaseResource  the orders database (an Engine, migrated once)
    ecomanager   EcoManagerResource      the stores file and a client per store
                 EcoManagerTestResource  its test version: tokens given, no waiting
    positions    PositionsResource       the position layers and the fallback chain

Each resource only turns its fields into Settings and asks runtime.Runtime for the parts,
so a Dagster run is wired exactly as a command is. An op, asset, check or sensor asks
for the ones it uses by parameter: a test substitutes any of them by passing another
instance (or a subclass) under the same key. Dagster builds each resource once per run
(and once per sensor tick), so the recovery job's five steps share one engine, one
Redis client and one chain.

Every field defaults to ``None``, meaning "the ECOSYNC_* variable, or its documented
default", read when a run needs it and never at import, so ``dagster dev`` works with no
extra setup. Secrets never pass through resource config: a database password stays
inside ECOSYNC_DATABASE_URL, and each store's token is read from the variable its
``token_env`` names when its client is built. A deployment that wants Dagster to show
where a value comes from can pass ``EnvVar("...")`` for any field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Settings, Store, find_store, load_stores
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.positions.database_layer import DatabaseRead
from ecosync_pipeline.positions.factory import Chain
from ecosync_pipeline.positions.json_layer import BackupRead
from ecosync_pipeline.positions.layer import PositionLayer
from ecosync_pipeline.positions.redis_layer import RedisSnapshot
from ecosync_pipeline.runtime import ENGINES, Runtime, build_client

ORDERS_DB = "orders_db"
ECOMANAGER = "ecomanager"
POSITIONS = "positions"


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
        """The run's engine, opened (and the schema brought up to date) on first use.

        One per URL in the process (runtime.ENGINES): Dagster copies a nested resource,
        and the copies share the pool."""
        if self._engine_url is None:
            url = self.database_url
            engine = ENGINES.acquire(url)
            self._engine_url = url
            return engine
        return ENGINES.held(self._engine_url)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine_url is not None:
            ENGINES.release(self._engine_url)
            self._engine_url = None


class EcoManagerResource(ConfigurableResource):
    """The EcoManager stores: the stores file; each token comes from its store's token_env.

    The interface the assets use (``stores``, ``store``, ``client``, ``clients``); this
    is the real one, EcoManagerTestResource the test version.
    """

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

    def settings(self) -> Settings:
        """The core's Settings: this resource's values over the ECOSYNC_* environment."""
        base = Settings.from_env()
        return Settings(
            database_url=base.database_url,
            redis_url=self.budget_redis_url or base.redis_url,
            stores_file=self.stores_path,
            backup_path=base.backup_path,
        )

    def stores(self) -> list[Store]:
        """The configured stores (parsed once per file version)."""
        return load_stores(self.stores_path)

    def store(self, identifier: str) -> Store:
        """The store a partition key (or any outside input) names; ConfigError naming the
        file if it is invalid or absent (the one lookup: config.find_store)."""
        return find_store(self.stores(), identifier, self.stores_path)

    def client(self, store: Store) -> EcoManagerClient:
        """A client for one store, under its shared rate budget; raises MissingToken
        naming the variable when unset."""
        return build_client(store, self.settings().redis_url)

    def clients(self) -> Callable[[Store], EcoManagerClient]:
        """A client factory for the chain's restore_all and verify_all."""
        return self.client


class EcoManagerTestResource(EcoManagerResource):
    """The test version: real clients over HTTP, with tokens given here instead of the
    environment, a rate budget counted in this process only, and no retry waits.

    For tests against a simulator or a recorded server; never for a deployment (the
    tokens would be in the run's configuration).
    """

    tokens: dict[str, str] = Field(
        default_factory=dict, description="Each store's token, by store identifier."
    )
    max_retries: int = Field(default=0, description="Retries of a failed request.")

    def client(self, store: Store) -> EcoManagerClient:
        """A client for ``store`` with its token from ``tokens`` (MissingToken when absent)."""
        return build_client(
            store,
            None,
            token=self.tokens.get(store.identifier, ""),
            rate_limiter=SharedBudget(store.identifier, store.budget, None),
            max_retries=self.max_retries,
            sleep=lambda _seconds: None,
        )


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
    _runtime: Runtime | None = PrivateAttr(default=None)

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
    def runtime(self) -> Runtime:
        """The run's composition root: this resource's layers and chain, the orders_db
        engine (opened only when needed) and the ecomanager clients."""
        if self._runtime is None:
            self._runtime = Runtime(
                self.settings(),
                stores=self.ecomanager.stores(),
                engine=lambda: self.orders_db.engine,
                client_factory=self.ecomanager.client,
            )
        return self._runtime

    @property
    def chain(self) -> Chain:
        """The run's fallback chain over the three layers, built on first use."""
        return self.runtime.chain

    @property
    def redis(self) -> PositionLayer[RedisSnapshot]:
        """Layer 1 alone, for a probe that needs neither the database nor the backup."""
        return self.runtime.redis

    @property
    def backup(self) -> PositionLayer[BackupRead]:
        """Layer 2 alone, for the sensor's read of the generation it recorded."""
        return self.runtime.backup

    @property
    def database(self) -> PositionLayer[DatabaseRead]:
        """Layer 3 (opens the database)."""
        return self.runtime.database

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._runtime is not None:
            self._runtime.close()  # the engine stays: orders_db releases it
            self._runtime = None


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


__all__ = [
    "ECOMANAGER",
    "ORDERS_DB",
    "POSITIONS",
    "EcoManagerResource",
    "EcoManagerTestResource",
    "OrdersDatabaseResource",
    "PositionsResource",
    "ecosync_resources",
]
