"""What one seed of the soak runs against: the simulator, the orders database, the receiver.

Everything is real and the soak's own: the simulator served over HTTP from this process
(it is also the ground truth), a PostgreSQL database ``ecosync_bench_soak_*`` created
for the seed and dropped after it, the benchmark's claimed Redis database, a stores
file naming both read modes, and ``ecosync webhooks serve`` in a process of its own,
registered with the simulator's webhooks API for the events that move an order.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import yaml

from ecosync_pipeline.asgi import free_port
from ecosync_pipeline.config import Store, load_stores
from ecosync_pipeline.lab.bench.resources import (
    BenchRedis,
    bench_postgres_url,
    temporary_folder,
    temporary_postgres,
)
from ecosync_pipeline.lab.bench.webhooks import ReceiverProcess
from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer, StoreSpec
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.webhooks.registration import WebhooksApi, register

SOAK_EVENTS = ("OrderCreated", "OrderDeleted", "OrderStatusChanged")
"""One delivery per change: a creation, a deletion, a status change."""
RATE_BUDGET = {"per_second": 50, "per_minute": 2000, "per_hour": 100_000, "per_day": 2_000_000}
"""Far above what the soak spends: the budget is shared in Redis, never the limit here.
Each window is less dense than the one before it, also at the fallback share a process
takes while Redis is gone (the limiter refuses a longer window as dense as a shorter)."""


@dataclass(frozen=True)
class SoakStore:
    """One store of a seed: its simulated shape and how ecosync reads it."""

    spec: StoreSpec
    read_mode: str


def soak_stores(seed: int, orders: int, count: int) -> list[SoakStore]:
    """``count`` stores (1 to 4) of about ``orders`` orders each, pages and cursor mode by
    turns, dense ids and sparse offset ids (PURNA's shape) by turns."""
    shapes = (
        ("NATUR", "pages", {"first_id": 1}),
        ("DILST", "cursor", {"first_id": 1}),
        ("PURNA", "pages", {"first_id": 500_000, "stride": 7}),
        ("MGSTR", "cursor", {"first_id": 200_000, "stride": 3}),
    )
    return [
        SoakStore(
            StoreSpec(name, count=orders, gap_rate=0.03, seed=seed, **shape),  # type: ignore[arg-type]
            mode,
        )
        for name, mode, shape in shapes[: max(1, min(count, len(shapes)))]
    ]


@dataclass
class SoakWorld:
    """One seed's simulator, database, Redis, stores, environment and receiver."""

    simulator: Simulator
    stores: list[Store]
    database_url: str
    admin_url: str
    redis: BenchRedis
    env: dict[str, str]
    folder: Path
    receiver: ReceiverProcess
    hook_urls: dict[str, str] = field(default_factory=dict)

    @property
    def backup(self) -> Path:
        """The JSON backup of the positions (ECOSYNC_BACKUP_PATH)."""
        return Path(self.env["ECOSYNC_BACKUP_PATH"])

    @property
    def database(self) -> str:
        """The orders database's name."""
        return self.database_url.rsplit("/", 1)[1]

    def terminate_connections(self) -> int:
        """pg_terminate_backend every connection to the orders database; how many."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchone()
        return int(row[0]) if row else 0

    def reactivate_webhooks(self) -> int:
        """Switch on the webhooks EcoManager disabled after their last retry, as the shop
        does once it reads the email; how many were switched on."""
        hub = self.simulator.webhooks
        done = 0
        for hook in hub.webhooks():
            if not hook.is_active:
                done += hub.set_status(hook.store, hook.id, True).is_active
        return done


def _write_stores(folder: Path, simulator: Simulator, stores: Sequence[SoakStore]) -> Path:
    entries = [
        {
            "identifier": s.spec.identifier,
            "name": s.spec.name,
            "base_url": simulator.store_url(s.spec.identifier),
            "token_env": s.spec.token_env,
            "per_page": 20,
            "import_per_page": 100,
            "read_mode": s.read_mode,
            "requests_per_second": RATE_BUDGET["per_second"],
            "rate_budget": RATE_BUDGET,
            "reconcile_calls_per_day": 1_000_000,
            "webhook_secret_env": _secret_variable(s.spec.identifier),
        }
        for s in stores
    ]
    path = folder / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": entries}, allow_unicode=True), encoding="utf-8")
    return path


def _secret_variable(identifier: str) -> str:
    return f"ECOSYNC_SOAK_WEBHOOK_SECRET_{identifier}"


def _environment(
    world_stores: list[Store], simulator: Simulator, database_url: str, redis_url: str, folder: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ECOSYNC_DATABASE_URL=database_url,
        ECOSYNC_REDIS_URL=redis_url,
        ECOSYNC_STORES_FILE=str(folder / "stores.yaml"),
        ECOSYNC_BACKUP_PATH=str(folder / "sync-positions.json"),
    )
    for store in world_stores:
        env[simulator.spec(store.identifier).token_env] = simulator.token(store.identifier)
        env[_secret_variable(store.identifier)] = secrets.token_hex(32)
    return env


@contextmanager
def soak_world(
    seed: int, stores: Sequence[SoakStore], redis: BenchRedis, admin_url: str | None = None
) -> Iterator[SoakWorld]:
    """Build one seed's world; everything it made is stopped, dropped or flushed after."""
    admin = admin_url or bench_postgres_url()
    redis.flush()
    with (
        temporary_folder("ecosync-bench-soak-") as folder,
        temporary_postgres(admin, prefix="ecosync_bench_soak") as database_url,
    ):
        engine = make_engine(database_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        simulator = Simulator([s.spec for s in stores], seed=seed)
        with SimulatorServer(simulator):
            configured = load_stores(_write_stores(folder, simulator, stores))
            env = _environment(configured, simulator, database_url, redis.url, folder)
            probe = configured[0].identifier
            receiver = ReceiverProcess(free_port(), env, folder / "receiver.log", probe=probe)
            world = SoakWorld(
                simulator, configured, database_url, admin, redis, env, folder, receiver
            )
            receiver.start()
            try:
                for store in configured:
                    url = f"{receiver.url}/webhooks/{store.identifier}"
                    world.hook_urls[store.identifier] = url
                    with WebhooksApi(store, simulator.token(store.identifier)) as api:
                        register(api, url, env[_secret_variable(store.identifier)], SOAK_EVENTS)
                yield world
            finally:
                receiver.stop()
        redis.flush()
