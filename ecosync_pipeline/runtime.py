"""The composition root: everything one process needs, built from Settings, in one place.

    Runtime(settings)               nothing is opened until it is asked for
      .stores, .store(identifier)   the stores file, and the one store lookup: an identifier
                                    from a command line, a URL or a partition key is parsed
                                    (config.validate_store_identifier) and found here
      .engine                       the orders database, brought up to date on first use
      .redis, .backup, .database    the three position layers
      .chain                        the fallback chain over them (page-mode stores only)
      .client(store)                a store's EcoManager client, under its rate budget
                                    shared in Redis with every other process
      .sync(store)                  one store's sync, by pages or by the newest-first cursor

The CLI commands, the webhook receiver and the Dagster resources (defs/resources.py, thin
wrappers of this) get their engine, layers, chain, clients and stores here: nothing else
decides what a deployment is made of.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.config import Settings, Store, find_store
from ecosync_pipeline.ecomanager.budget import SharedBudget, shared_budget, use_redis
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseLayer, DatabaseRead
from ecosync_pipeline.positions.factory import Chain, page_stores
from ecosync_pipeline.positions.json_layer import BackupRead, JsonBackup
from ecosync_pipeline.positions.layer import PositionLayer
from ecosync_pipeline.positions.redis_layer import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    RedisLayer,
    RedisSnapshot,
)
from ecosync_pipeline.storage import make_engine, upgrade_if_behind
from ecosync_pipeline.sync.cursor import sync_by_cursor
from ecosync_pipeline.sync.engine import SyncResult, sync_store

ClientFactory = Callable[[Store], EcoManagerClient]


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
    redis: RedisLayer | None = None,
    backup: JsonBackup | None = None,
) -> Chain:
    """The three layers over ``engine`` (the orders database), composed for ``stores``.

    Only page-mode stores have a position: a cursor-mode store reads down to the table's
    last id (ecosync_pipeline.sync.cursor), so it has nothing to lose or recover.
    """
    return PositionChain(
        page_stores(stores),
        redis if redis is not None else build_redis(settings),
        backup if backup is not None else build_backup(settings),
        DatabaseLayer(engine),
    )


def build_client(
    store: Store, redis_url: str | None, *, token: str | None = None, **options: Any
) -> EcoManagerClient:
    """A client for one store, drawing on its rate budget counted in ``redis_url`` (shared
    with every other process; None: this process's default), unless ``options`` give a
    ``rate_limiter``. The token is ``token``, else read now from the store's variable or
    file (MissingToken or SecretFileError naming where, when it cannot be)."""
    options.setdefault("rate_limiter", shared_budget(store, redis_url))
    if token is not None:
        options.pop("environ", None)
        return EcoManagerClient(store, token, **options)
    return EcoManagerClient.from_store(store, **options)


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


class SharedEngines:
    """One Engine per database URL per process, shared by every user that asks for it.

    Dagster initializes a nested resource (the positions' orders_db) as a copy of its
    own, so without this a sync would open two pools on one database. The engine is
    opened (and the schema brought up to date) by its first user and disposed by its last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, int]] = {}

    def acquire(self, url: str) -> Engine:
        """The URL's engine, opened now if no one holds it; release it when done."""
        with self._lock:
            engine, users = self._engines.get(url) or (None, 0)
            if engine is None:
                engine = upgrade_if_behind(make_engine(url))
            self._engines[url] = (engine, users + 1)
            return engine

    def held(self, url: str) -> Engine:
        """The engine of a user that acquired it already."""
        with self._lock:
            return self._engines[url][0]

    def release(self, url: str) -> None:
        """One user fewer; the last one disposes the engine."""
        with self._lock:
            engine, users = self._engines[url]
            if users > 1:
                self._engines[url] = (engine, users - 1)
                return
            del self._engines[url]
        engine.dispose()


ENGINES = SharedEngines()


class Runtime(Closing):
    """Settings, stores, the orders engine, the position layers, the chain and the clients
    of one process, each built on first use and released by ``close()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        stores: Sequence[Store] | None = None,
        engine: Engine | Callable[[], Engine] | None = None,
        chain: Chain | None = None,
        client_factory: ClientFactory | None = None,
        client_options: Mapping[str, Any] | None = None,
        migrate: bool = True,
    ) -> None:
        """Parts given here are used as they are and left open by ``close()`` (their
        owner closes them): a Dagster run's engine, say, shared by its resources. An
        engine may be given as a function, asked only when the database is needed.
        ``migrate=False`` opens the database as it is (the schema commands')."""
        self.settings = settings
        self._stores = list(stores) if stores is not None else None
        self._engine = engine if isinstance(engine, Engine) else None
        self._engine_source = engine if callable(engine) else None
        self._owns_engine = engine is None
        self._migrate = migrate
        self._chain = chain
        self._owns_chain = chain is None
        self._redis: RedisLayer | None = None
        self._backup: JsonBackup | None = None
        self._lock = threading.RLock()
        self.client_factory = client_factory
        """Builds each store's client instead of ``client_options`` (a resource's)."""
        self.client_options: dict[str, Any] = dict(client_options or {})
        """Options of every client built here (EcoManagerClient's keyword arguments)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, stores: Sequence[Store] | None = None) -> Runtime:
        """A Runtime with its database open (migrated) and its chain built: a command
        fails at once, naming what is wrong, rather than midway."""
        runtime = cls(settings, stores=stores)
        try:
            runtime.chain  # noqa: B018 (opens the engine and the layers now)
        except BaseException:
            runtime.close()
            raise
        return runtime

    # -- the stores ------------------------------------------------------------------------

    @property
    def stores(self) -> list[Store]:
        """The configured stores (the stores file, read on first use)."""
        if self._stores is None:
            self._stores = self.settings.stores()
        return self._stores

    def store(self, identifier: str | Store) -> Store:
        """The configured store named by ``identifier`` (outside input, parsed here), or
        ConfigError naming the stores file and the stores it has."""
        if isinstance(identifier, Store):
            return identifier
        return find_store(self.stores, identifier, self.settings.stores_file)

    def select(self, identifiers: Sequence[str]) -> list[Store]:
        """The stores named (each looked up), or every configured store when none is."""
        return [self.store(i) for i in identifiers] if identifiers else list(self.stores)

    # -- the database and the positions ----------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The orders database, opened and brought up to date on first use."""
        with self._lock:
            if self._engine is None:
                if self._engine_source is not None:
                    self._engine = self._engine_source()
                else:
                    opened = make_engine(self.settings.database_url)
                    self._engine = upgrade_if_behind(opened) if self._migrate else opened
            return self._engine

    @property
    def redis(self) -> PositionLayer[RedisSnapshot]:
        """Layer 1 (alone, it opens neither the database nor the backup: a cheap probe)."""
        with self._lock:
            if self._chain is not None:
                return self._chain.redis
            if self._redis is None:
                self._redis = build_redis(self.settings)
            return self._redis

    @property
    def backup(self) -> PositionLayer[BackupRead]:
        """Layer 2, the JSON backup (alone, it opens neither Redis nor the database)."""
        with self._lock:
            if self._chain is not None:
                return self._chain.backup
            if self._backup is None:
                self._backup = build_backup(self.settings)
            return self._backup

    @property
    def database(self) -> PositionLayer[DatabaseRead]:
        """Layer 3, the positions computed from the orders database."""
        return self.chain.database

    @property
    def chain(self) -> Chain:
        """The fallback chain over the three layers, built on first use."""
        with self._lock:
            if self._chain is None:
                redis = self._redis or build_redis(self.settings)
                backup = self._backup or build_backup(self.settings)
                self._chain = build_chain(
                    self.settings, self.stores, self.engine, redis=redis, backup=backup
                )
                self._redis = self._backup = None  # the chain holds them now
            return self._chain

    # -- EcoManager ------------------------------------------------------------------------

    def client(self, store: Store) -> EcoManagerClient:
        """A client for one store, drawing on its rate budget shared in Redis; raises
        MissingToken naming the variable when the token is unset."""
        if self.client_factory is not None:
            return self.client_factory(store)
        return build_client(store, self.settings.redis_url, **self.client_options)

    def clients(self) -> ClientFactory:
        """The client factory, for the chain's restore_all and verify_all."""
        return self.client

    def budget(self, store: Store) -> SharedBudget:
        """The store's rate budget, counted in our Redis with every other process's calls."""
        return shared_budget(store, self.settings.redis_url)

    def share_budgets(self) -> None:
        """Count every budget this process makes (the webhooks API's too) in our Redis."""
        use_redis(self.settings.redis_url)

    # -- the sync --------------------------------------------------------------------------

    def sync(
        self,
        identifier: str | Store,
        *,
        budget_seconds: float | None = None,
        client: EcoManagerClient | None = None,
    ) -> SyncResult:
        """Sync one store: sync_store (pages), or sync_by_cursor for a cursor-mode store.

        ``client``: the store's client to use (left open); by default one of its own.
        """
        store = self.store(identifier)
        if client is None:
            with self.client(store) as own:
                return self.sync(store, budget_seconds=budget_seconds, client=own)
        # No wait between attempts (a Retry-After) outlasts the run's time budget.
        with client.time_limit(budget_seconds):
            if store.read_mode == "cursor":
                return sync_by_cursor(
                    store, client=client, engine=self.engine, budget_seconds=budget_seconds
                )
            return sync_store(
                store,
                chain=self.chain,
                client=client,
                engine=self.engine,
                budget_seconds=budget_seconds,
            )

    def close(self) -> None:
        """Release what this Runtime opened: the Redis connection, the database pool."""
        with self._lock:
            if self._chain is not None and self._owns_chain:
                self._chain.close()
            for layer in (self._redis, self._backup):
                if layer is not None:
                    layer.close()
            if self._engine is not None and self._owns_engine:
                self._engine.dispose()
            self._chain = self._redis = self._backup = None
            if self._owns_engine:
                self._engine = None
