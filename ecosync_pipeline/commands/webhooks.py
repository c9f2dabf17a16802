"""`ecosync webhooks ...`: run the receiver, and register, list or delete a store's webhooks.

ecosync webhooks serve [--host 127.0.0.1] [--port 8787] [--sync-on-gap]
ecosync webhooks register --store NATUR --url https://hooks.example.com/webhooks/NATUR
                          [--events OrderCreated,OrderDeleted,...]
ecosync webhooks list [--store NATUR]
ecosync webhooks delete --store NATUR [--id 12 ...]
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.errors import ConfigError, EcosyncError
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.tables import format_table
from ecosync_pipeline.webhooks.config import EVENTS, webhook_secret, webhook_stores

if TYPE_CHECKING:
    from ecosync_pipeline.webhooks.registration import WebhooksApi

logger = logging.getLogger(__name__)


@click.group()
def webhooks() -> None:
    """EcoManager's webhooks: the signed receiver and the registration of the webhooks."""


def _api(runtime: Runtime, store: Store) -> WebhooksApi:
    """The store's webhooks API, drawing on the store's budget shared in Redis (as the sync)."""
    from ecosync_pipeline.webhooks.registration import WebhooksApi

    runtime.share_budgets()
    return WebhooksApi(store, store.token())


class GapSyncer:
    """Runs a store's sync in a thread when a delivery leaves a gap.

    One at a time per store, and at most one every ``min_interval`` seconds: in a store
    with sparse ids every new order is a "gap", and each sync costs API calls.
    """

    def __init__(self, runtime: Runtime, min_interval: float = 60.0) -> None:
        self._runtime = runtime
        self._min_interval = min_interval
        self._running: set[str] = set()
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, store: str, ids: list[int]) -> None:
        now = time.monotonic()
        with self._lock:
            recent = now - self._started.get(store, -self._min_interval) < self._min_interval
            if store in self._running or recent:
                return
            self._running.add(store)
            self._started[store] = now
        threading.Thread(target=self._sync, args=(store,), daemon=True).start()

    def _sync(self, store: str) -> None:
        try:
            result = self._runtime.sync(store)
            logger.info("store %s: gap sync read %d new orders", store, result.orders_new)
        except EcosyncError as exc:
            logger.error("store %s: gap sync failed: %s", store, exc)
        finally:
            with self._lock:
                self._running.discard(store)


@webhooks.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=int)
@click.option(
    "--sync-on-gap/--no-sync-on-gap",
    default=False,
    show_default=True,
    help="Run a store's sync here when an OrderCreated leaves a gap (otherwise the Dagster "
    "sensor asks for it).",
)
@click.option(
    "--max-body-bytes", default=256 * 1024, show_default=True, type=click.IntRange(min=1024)
)
@click.option(
    "--max-connections",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections held at once; past it, new requests are answered 503 (retried).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a request's headers may take; a slower connection is closed.",
)
@reports_errors
def serve(
    host: str,
    port: int,
    sync_on_gap: bool,
    max_body_bytes: int,
    max_connections: int,
    header_timeout: float,
) -> None:
    """Receive webhooks at http://HOST:PORT/webhooks/<STORE> and apply them to the orders table."""
    import uvicorn

    from ecosync_pipeline.asgi import ConnectionLimits, bind_socket, uvicorn_config
    from ecosync_pipeline.webhooks.receiver import ReceiverSettings, create_receiver_app
    from ecosync_pipeline.webhooks.worker import Applier, StoreReaders

    runtime = Runtime(Settings.from_env())
    stores = webhook_stores(runtime.stores)
    if not stores:
        raise ConfigError(
            f"no store in {runtime.settings.stores_file} takes webhooks; add "
            "webhook_secret_env (or webhook_secret_file) to the stores that should"
        )
    for store in stores:
        webhook_secret(store)  # fail now, naming the variable or file, not at each delivery
    engine = runtime.engine
    readers = StoreReaders(stores, runtime.client)  # settle ties, under the stores' budgets
    applier = Applier(
        engine,
        {s.identifier: s.name for s in stores},
        on_gap=GapSyncer(runtime) if sync_on_gap else None,
        readers=readers,
    ).start()
    app = create_receiver_app(
        engine,
        stores,
        settings=ReceiverSettings(max_body_bytes=max_body_bytes),
        on_stored=applier.wake,
    )
    sock = bind_socket(host, port)
    names = ", ".join(s.identifier for s in stores)
    click.echo(f"receiving webhooks for {names} at http://{host}:{sock.getsockname()[1]}/webhooks/")
    limits = ConnectionLimits(concurrency=max_connections, header_timeout=header_timeout)
    try:
        uvicorn.Server(uvicorn_config(app, limits)).run(sockets=[sock])
    finally:
        sock.close()
        applier.stop()
        readers.close()
        runtime.close()


def _events(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    events = tuple(e.strip() for e in value.split(",") if e.strip())
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise click.BadParameter(f"use comma-separated events among {', '.join(EVENTS)}")
    return events


@webhooks.command()
@click.option("--store", "identifier", required=True, help="Store identifier, e.g. NATUR.")
@click.option("--url", required=True, help="The receiver's public HTTPS URL for this store.")
@click.option(
    "--events",
    default=",".join(EVENTS),
    show_default=True,
    callback=_events,
    help="Comma-separated events to register.",
)
@reports_errors
def register(identifier: str, url: str, events: tuple[str, ...]) -> None:
    """Create or update the store's webhooks (running it twice creates nothing new)."""
    from ecosync_pipeline.webhooks.registration import register as do_register

    runtime = Runtime(Settings.from_env())
    store = runtime.store(identifier)
    secret = webhook_secret(store)
    if not url.startswith("https://"):
        click.echo(f"warning: {url} is not HTTPS; EcoManager delivers to HTTPS URLs", err=True)
    with runtime, _api(runtime, store) as api:
        done = do_register(api, url, secret, events)
    rows = [(r.event, str(r.webhook_id), r.action, "yes" if r.is_active else "NO") for r in done]
    click.echo(format_table(("event", "webhook id", "action", "active"), rows))
    if not all(r.is_active for r in done):
        raise SystemExit(f"some webhooks are not active: {url} did not answer the activation GET")


@webhooks.command("list")
@click.option("--store", "identifiers", multiple=True, help="Store (repeatable); default: all.")
@reports_errors
def list_(identifiers: tuple[str, ...]) -> None:
    """Print every webhook registered for the stores."""
    runtime = Runtime(Settings.from_env())
    stores = runtime.select(identifiers) if identifiers else webhook_stores(runtime.stores)
    rows = []
    for store in stores:
        with _api(runtime, store) as api:
            for hook in api.list():
                rows.append(
                    (
                        store.identifier,
                        str(hook.get("id")),
                        str(hook.get("event")),
                        "yes" if hook.get("is_active") else "no",
                        str(hook.get("delivery_url")),
                        str(hook.get("name")),
                    )
                )
    click.echo(format_table(("store", "id", "event", "active", "delivery url", "name"), rows))


@webhooks.command()
@click.option("--store", "identifier", required=True, help="Store identifier, e.g. NATUR.")
@click.option(
    "--id", "ids", multiple=True, type=int, help="Webhook id (repeatable); default: ecosync's."
)
@reports_errors
def delete(identifier: str, ids: tuple[int, ...]) -> None:
    """Delete the store's webhooks (the given ids, or every one ecosync registered)."""
    from ecosync_pipeline.webhooks.registration import unregister

    runtime = Runtime(Settings.from_env())
    store = runtime.store(identifier)
    with runtime, _api(runtime, store) as api:
        deleted = unregister(api, list(ids) or None)
    click.echo(f"store {identifier}: deleted {len(deleted)} webhooks {deleted}")


@webhooks.command()
@click.option("--store", "identifier", required=True, help="Store identifier, e.g. NATUR.")
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Replay the deliveries received from this UTC time on.",
)
@reports_errors
def replay(identifier: str, since: datetime) -> None:
    """Apply a store's stored deliveries again (harmless: nothing older replaces newer)."""
    from ecosync_pipeline.webhooks.apply import apply_pending
    from ecosync_pipeline.webhooks.inbox import replay as mark_for_replay

    with Runtime(Settings.from_env()) as runtime:
        store = runtime.store(identifier)
        engine = runtime.engine
        marked = mark_for_replay(engine, store.identifier, since.replace(tzinfo=timezone.utc))
        done = apply_pending(engine, {store.identifier: store.name})
    click.echo(
        f"store {identifier}: {marked} deliveries replayed, {done.applied} written, "
        f"{done.stale} older than the table (unchanged)"
    )
