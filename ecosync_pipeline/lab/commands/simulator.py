"""`ecosync simulator ...`: serve the local EcoManager simulator and drive it."""

from __future__ import annotations

import json
import logging

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings
from ecosync_pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

URL_OPTION = click.option(
    "--url",
    default="http://127.0.0.1:8765",
    show_default=True,
    help="Where the simulator is served.",
)
STORE_OPTION = click.option("--store", required=True, help="Store identifier, e.g. NATUR.")


@click.group()
def simulator() -> None:
    """A local EcoManager server for the demo, the tests and the benchmarks."""


@simulator.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--stores-file",
    type=click.Path(dir_okay=False),
    help="Stores YAML (default: ECOSYNC_STORES_FILE or data/stores.yaml).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of every generated id, order and fault draw.",
)
@click.option(
    "--webhook-time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Shrink (or stretch) the webhook retry schedule: 0.001 plays a day in 86 s.",
)
@reports_errors
def serve(
    host: str, port: int, stores_file: str | None, seed: int, webhook_time_scale: float
) -> None:
    """Serve every configured store at http://HOST:PORT/<STORE>/api/shop/v2/orders."""
    import uvicorn

    from ecosync_pipeline.asgi import bind_socket, uvicorn_config
    from ecosync_pipeline.lab.simulator import Simulator, create_app

    path = stores_file or Settings.from_env().stores_file
    sim = Simulator.from_stores_file(path, seed=seed)
    if webhook_time_scale != 1.0:
        hub = sim.webhooks.dispatcher
        hub.policy = hub.policy.updated(time_scale=webhook_time_scale)
    sock = bind_socket(host, port)
    # With --port 0 the system picks the port: report the real one.
    base = f"http://{host}:{sock.getsockname()[1]}"
    sim.url = base
    for store in sim.stores():
        info = sim.describe(store)
        click.echo(
            f"{store}: {info['count']} orders, ids {info['first_id']}..{info['last_id']}, "
            f"{info['last_page']} pages of 20 at {base}/{store}"
        )
    click.echo(f"simulator ready at {base} (seed {seed}); Ctrl-C to stop")
    sim.start_clock()  # status flow and the other timed switches move while nobody asks
    try:
        uvicorn.Server(uvicorn_config(create_app(sim))).run(sockets=[sock])
    finally:
        sim.stop_clock()
        sock.close()
        sim.webhooks.dispatcher.stop()


@simulator.command("add-orders")
@STORE_OPTION
@click.option("--count", default=1, show_default=True, type=click.IntRange(min=0))
@URL_OPTION
@reports_errors
def add_orders(store: str, count: int, url: str) -> None:
    """Append new orders to a running simulator's store and print their ids."""
    from ecosync_pipeline.lab.simulator import SimulatorClient

    with SimulatorClient(url) as client:
        ids = client.add_orders(store, count)
    click.echo(f"{store}: added {len(ids)} orders" + (f", ids {ids[0]}..{ids[-1]}" if ids else ""))


@simulator.command("delete-orders")
@STORE_OPTION
@click.option("--ids", help="Comma-separated order ids to delete.")
@click.option(
    "--random",
    "random_count",
    type=click.IntRange(min=0),
    help="Delete this many random orders instead.",
)
@URL_OPTION
@reports_errors
def delete_orders(store: str, ids: str | None, random_count: int | None, url: str) -> None:
    """Delete orders (later orders shift one slot towards page 1 for each)."""
    from ecosync_pipeline.lab.simulator import SimulatorClient

    if (ids is None) == (random_count is None):
        raise ConfigError("give either --ids 1,2,3 or --random N")
    with SimulatorClient(url) as client:
        if ids is not None:
            try:
                wanted = [int(part) for part in ids.split(",") if part.strip()]
            except ValueError:
                raise ConfigError(f"--ids must be comma-separated integers, got {ids!r}") from None
            deleted = client.delete_orders(store, wanted)
        else:
            deleted = client.delete_random(store, random_count or 0)
    click.echo(f"{store}: deleted {len(deleted)} orders: {deleted}")


@simulator.command("faults")
@STORE_OPTION
@click.argument("switches", nargs=-1)
@click.option("--clear", is_flag=True, help="Back to a well-behaved server first.")
@URL_OPTION
@reports_errors
def faults(store: str, switches: tuple[str, ...], clear: bool, url: str) -> None:
    """Set fault switches, e.g. `faults --store NATUR latency_ms=200 unavailable_rate=0.1`.

    Values are JSON (numbers, true/false, null); anything else is taken as a string.
    """
    from ecosync_pipeline.lab.simulator import SimulatorClient

    values = {}
    for item in switches:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"switch {item!r} must be written name=value")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    with SimulatorClient(url) as client:
        if clear:
            client.clear_faults(store)
        current = client.set_faults(store, **values)
    click.echo(json.dumps(current, indent=2))


@simulator.command("stats")
@click.option("--store", help="One store (default: all).")
@URL_OPTION
@reports_errors
def stats(store: str | None, url: str) -> None:
    """Print stores' sizes, ids, switches and request counts as JSON."""
    from ecosync_pipeline.lab.simulator import SimulatorClient

    with SimulatorClient(url) as client:
        described = client.describe(store) if store else client.stores()
    click.echo(json.dumps(described, indent=2, ensure_ascii=False))
