"""Everything one process needs to sync, built once from Settings.

The CLI, the demo and the Dagster resources all build a Runtime, so the wiring of
layers, engine and clients lives in this one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.ecomanager.budget import use_redis
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.factory import build_chain
from ecosync_pipeline.storage import make_engine, upgrade_if_behind
from ecosync_pipeline.sync.cursor import sync_by_cursor
from ecosync_pipeline.sync.engine import SyncResult, sync_store


@dataclass
class Runtime(Closing):
    """Settings, stores, the orders engine and the position chain of one process."""

    settings: Settings
    stores: list[Store]
    engine: Engine
    chain: PositionChain
    client_options: dict[str, float] = field(default_factory=dict)
    client_factory: Callable[[Store], EcoManagerClient] | None = None
    """Builds each store's client instead of client_options (the Dagster resource's)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        stores: list[Store] | None = None,
    ) -> Runtime:
        """Load the stores, open the database (migrating it) and compose the layers."""
        store_list = stores if stores is not None else settings.stores()
        # Every client this process builds counts its store's rate budget in this Redis,
        # shared with the other processes (see ecomanager/budget.py).
        use_redis(settings.redis_url)
        engine = upgrade_if_behind(make_engine(settings.database_url))
        chain = build_chain(settings, store_list, engine)
        return cls(settings=settings, stores=store_list, engine=engine, chain=chain)

    def store(self, identifier: str) -> Store:
        """The configured store with this identifier."""
        for store in self.stores:
            if store.identifier == identifier:
                return store
        known = ", ".join(s.identifier for s in self.stores) or "none"
        raise ConfigError(
            f"store {identifier} is not in {self.settings.stores_file} (configured: {known})"
        )

    def client(self, store: Store) -> EcoManagerClient:
        """A client for one store; raises MissingToken naming the variable when unset."""
        if self.client_factory is not None:
            return self.client_factory(store)
        return EcoManagerClient.from_store(store, **self.client_options)

    def sync(
        self,
        identifier: str,
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
                return self.sync(identifier, budget_seconds=budget_seconds, client=own)
        if store.read_mode == "cursor":
            return sync_by_cursor(store, client=client, engine=self.engine)
        return sync_store(
            store,
            chain=self.chain,
            client=client,
            engine=self.engine,
            budget_seconds=budget_seconds,
        )

    def close(self) -> None:
        """Release the database pool and the Redis connection."""
        self.chain.close()
        self.engine.dispose()
