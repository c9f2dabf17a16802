"""`ecosync bench ...`: the benchmarks, each a thin layer over ecosync_pipeline.lab.bench.

    ecosync bench recovery [--json] [--quick]
    ecosync bench sensor   [--stores 10,100,1000,10000] [--ticks 7] [--json]
    ecosync bench fanout   [--stores 10,100,1000] [--new-orders K] [--workers 1,2] [--json]
    ecosync bench sync     [--orders 10000,200000] [--runs 5] [--latency-ms 0,20]
                           [--database-url URL] [--json]
    ecosync bench mirror   [--seeds 10] [--small] [--scenarios ...] [--json]
    ecosync bench soak     [--minutes 10] [--seeds 3] [--stores 4] [--orders 2000] [--strict]
                           [--json]
    ecosync bench frontier [--orders 181601] [--time-scale 30] [--json]
    ecosync bench merge    [--backend postgresql|sqlite] [--json]

Each uses its own Redis database number (--redis-url, default ECOSYNC_BENCH_REDIS_URL
or db 10; a database holding someone else's keys is refused) and an orders database it
creates and drops itself. Progress goes to stderr, the table (or JSON) to stdout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.sync.batch import DEFAULT_BATCH_SIZE, default_runs

REDIS_OPTION = click.option(
    "--redis-url",
    default=None,
    help="A Redis database of the benchmark's own (default: ECOSYNC_BENCH_REDIS_URL, else "
    "redis://127.0.0.1:6379/10). It is flushed; one holding other keys is refused.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def shown(*names: str, default: Any, type: click.ParamType, help: str | None = None) -> Decorator:
    """A valued option whose --help shows its default, as every bench's valued option does."""
    return click.option(*names, default=default, show_default=True, type=type, help=help)


def backend_option(help: str | None = None) -> Decorator:
    """--backend: the orders database the bench writes, PostgreSQL (the default) or SQLite."""
    return shown(
        "--backend", default="postgresql", type=click.Choice(["postgresql", "sqlite"]), help=help
    )


def bench_command(name: str, *options: Decorator) -> Decorator:
    """A bench subcommand with its options in --help's order and errors reported as the CLI's."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = reports_errors(func)
        for option in reversed(options):
            func = option(func)
        return bench.command(name)(func)

    return decorate


def _numbers(kind: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, str], Any]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(v.strip().replace("_", "")) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
        if not values or any(v < 0 for v in values):
            raise click.BadParameter(f"expected comma-separated numbers >= 0, got {value!r}")
        return values

    return parse


def numbers_option(
    *names: str, default: str, help: str, kind: Callable[[str], Any] = int
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option of comma-separated numbers >= 0, given to the command as a tuple."""
    return click.option(
        *names, default=default, show_default=True, callback=_numbers(kind), help=help
    )


def _progress(message: str) -> None:
    click.echo(message, err=True)


@contextmanager
def _quiet_core() -> Iterator[None]:
    """Keep INFO lines (the sync's, httpx's per request, the sensor's) out of the output.

    Without -v, log records below WARNING are dropped process-wide while a benchmark
    runs: the Dagster sensor logs through loggers of its own, not under one name.
    """
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _run_bench(run: Callable[..., Any], as_json: bool, **options: Any) -> None:
    """Run one benchmark quietly, its progress on stderr, and print its report."""
    with _quiet_core():
        report = run(progress=_progress, **options)
    _emit(report, as_json)


def _emit(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        click.echo(report.table())


@click.group("bench")
def bench() -> None:
    """Benchmarks: recovery after a lost position, the loss sensor's tick, sync throughput."""


@bench_command(
    "recovery",
    JSON_OPTION,
    click.option(
        "--quick",
        is_flag=True,
        help="Fetch only the first pages of the page-1 restart over HTTP and extrapolate its "
        "time (labelled); calls, missing and re-read stay exact.",
    ),
    numbers_option(
        "--k",
        "ks",
        default="0,15,400,5000",
        help="New orders after the last sync, comma-separated.",
    ),
    backend_option(
        help="The orders database: a PostgreSQL database created for the run "
        "(ECOSYNC_BENCH_POSTGRES_URL is the admin URL), or a SQLite file in a temporary folder."
    ),
    REDIS_OPTION,
)
def recovery(
    as_json: bool, quick: bool, ks: tuple[int, ...], backend: str, redis_url: str | None
) -> None:
    """Resume after a lost position: ecosync against the old system's two strategies."""
    from ecosync_pipeline.lab.bench import run_recovery_bench

    _run_bench(
        run_recovery_bench,
        as_json,
        quick=quick,
        ks=ks,
        redis_url=redis_url,
        backend="sqlite" if backend == "sqlite" else "postgresql",
    )


@bench_command(
    "sensor",
    JSON_OPTION,
    numbers_option(
        "--stores",
        "store_counts",
        default="10,100,1000,10000",
        help="Store counts to time, comma-separated.",
    ),
    shown("--ticks", default=7, type=click.IntRange(min=1)),
    click.option("--no-dagster", is_flag=True, help="Time the core probe only."),
    REDIS_OPTION,
)
def sensor(
    as_json: bool,
    store_counts: tuple[int, ...],
    ticks: int,
    no_dagster: bool,
    redis_url: str | None,
) -> None:
    """Tick time of the cache-loss probe and sensor, healthy and after a flush."""
    from ecosync_pipeline.lab.bench import run_sensor_bench

    _run_bench(
        run_sensor_bench,
        as_json,
        store_counts=store_counts,
        ticks=ticks,
        redis_url=redis_url,
        dagster=not no_dagster,
    )


@bench_command(
    "sync",
    JSON_OPTION,
    numbers_option(
        "--orders",
        default="10000,200000",
        help="Store sizes for the memory runs; the smallest is also the throughput store.",
    ),
    shown("--runs", default=5, type=click.IntRange(min=1)),
    numbers_option(
        "--latency-ms",
        "latencies",
        default="0,20",
        kind=float,
        help="Simulated latency per request, comma-separated.",
    ),
    click.option(
        "--throughput-orders",
        type=click.IntRange(min=1),
        default=None,
        help="Size of the throughput store (default: the smallest of --orders).",
    ),
    shown("--per-page", default=20, type=click.IntRange(1, 100)),
    click.option(
        "--database-url",
        default=None,
        help="Use this orders database instead of creating one (only the benchmark's own "
        "stores are written and deleted).",
    ),
    click.option("--no-profile", is_flag=True, help="Skip the cProfile run."),
    click.option("--no-memory", is_flag=True, help="Skip the traced memory runs."),
    REDIS_OPTION,
)
def sync_bench(
    as_json: bool,
    orders: tuple[int, ...],
    runs: int,
    latencies: tuple[float, ...],
    throughput_orders: int | None,
    per_page: int,
    database_url: str | None,
    no_profile: bool,
    no_memory: bool,
    redis_url: str | None,
) -> None:
    """Orders per second, fetch only against fetch + upsert, and memory of a first sync."""
    from ecosync_pipeline.lab.bench import run_sync_bench

    _run_bench(
        run_sync_bench,
        as_json,
        orders=orders,
        runs=runs,
        latencies_ms=latencies,
        throughput_orders=throughput_orders,
        per_page=per_page,
        database_url=database_url,
        redis_url=redis_url,
        profile=not no_profile,
        memory=not no_memory,
    )


@bench_command(
    "webhooks",
    JSON_OPTION,
    shown("--rate", default=20.0, type=click.FloatRange(min=0.1)),
    shown("--seconds", default=60.0, type=click.FloatRange(min=5)),
    shown(
        "--status-rate",
        default=4.0,
        type=click.FloatRange(min=0),
        help="Status changes a second, on orders of the phase.",
    ),
    shown("--down-seconds", default=30.0, type=click.FloatRange(min=1)),
    shown(
        "--time-scale",
        default=0.01,
        type=click.FloatRange(min=0.0001, max=1),
        help="Shrinks EcoManager's retry schedule (22 s, 110 s, ... at 1) so the retries "
        "finish within the benchmark.",
    ),
    backend_option(),
)
def webhooks_bench(
    as_json: bool,
    rate: float,
    seconds: float,
    status_rate: float,
    down_seconds: float,
    time_scale: float,
    backend: str,
) -> None:
    """Creation-to-row latency of pushed orders, events lost and duplicated, with the
    receiver up and then killed for a while."""
    from ecosync_pipeline.lab.bench.webhooks import run_webhooks_bench

    _run_bench(
        run_webhooks_bench,
        as_json,
        rate=rate,
        seconds=seconds,
        status_rate=status_rate,
        down_seconds=down_seconds,
        down_at=min(10.0, seconds / 4),
        time_scale=time_scale,
        backend=backend,
    )


@bench_command(
    "mirror",
    JSON_OPTION,
    shown("--seeds", default=10, type=click.IntRange(min=1)),
    click.option(
        "--small", is_flag=True, help="A NATUR-sized store 40 times smaller (quick look)."
    ),
    click.option(
        "--scenarios",
        default="swaps,no-meta,reconcile,deletions,statuses,cursor",
        show_default=True,
        help="Which scenarios to run, comma-separated.",
    ),
    REDIS_OPTION,
)
def mirror(as_json: bool, seeds: int, small: bool, scenarios: str, redis_url: str | None) -> None:
    """The mirror: swaps and deletions during runs, old deletions, statuses, cursor mode."""
    from ecosync_pipeline.lab.bench.mirror import SCENARIOS
    from ecosync_pipeline.lab.bench.mirror_run import run_mirror_bench

    wanted = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        raise click.BadParameter(f"unknown scenarios {', '.join(unknown)}; use {SCENARIOS}")
    _run_bench(
        run_mirror_bench,
        as_json,
        seeds=seeds,
        small=small,
        redis_url=redis_url,
        scenarios=wanted,
    )


@bench_command("merge", JSON_OPTION, backend_option(), REDIS_OPTION)
def merge_bench(as_json: bool, backend: str, redis_url: str | None) -> None:
    """The poll, the webhooks and the reconciliation in one table: deletions against pages,
    deliveries of one second, --max-calls 1, a sync during a reconcile, a delivery of 2^63."""
    from ecosync_pipeline.lab.bench.merge_rule import run_merge_rule_bench

    _run_bench(
        run_merge_rule_bench,
        as_json,
        backend="sqlite" if backend == "sqlite" else "postgresql",
        redis_url=redis_url,
    )


@bench_command(
    "fanout",
    numbers_option(
        "--stores", "sizes", default="10,100,1000", help="Numbers of stores, one world each."
    ),
    shown(
        "--new-orders",
        default=0,
        type=click.IntRange(min=0),
        help="New orders per store before every tick (0: idle stores).",
    ),
    click.option(
        "--workers",
        default="",
        help="Celery workers, e.g. 1,2 (each a row): runs go through RabbitMQ to that many "
        "`celery` workers. Default: runs launched by the daemon's run queue on this machine.",
    ),
    shown("--ticks", default=3, type=click.IntRange(min=1)),
    shown(
        "--warmup",
        default=1,
        type=click.IntRange(min=0),
        help="Ticks after the daemon starts that are printed apart and left out of the "
        "medians (the first tick finds the code server and the connection pool cold).",
    ),
    shown("--batch-size", default=DEFAULT_BATCH_SIZE, type=click.IntRange(min=1)),
    click.option(
        "--runs",
        type=click.IntRange(min=1),
        help="ECOSYNC_SYNC_RUNS: a tick's stores split across at least this many runs when "
        "there are enough (default: the machine's CPUs, as the schedule's own default).",
    ),
    shown(
        "--sync-workers",
        default=4,
        type=click.IntRange(1, 7),
        help="Stores synced at once inside a run, and by the floor's `ecosync sync`.",
    ),
    REDIS_OPTION,
    JSON_OPTION,
)
def fanout(
    sizes: tuple[int, ...],
    new_orders: int,
    workers: str,
    ticks: int,
    warmup: int,
    batch_size: int,
    runs: int | None,
    sync_workers: int,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """One tick of the real schedule (daemon, run queue or Celery) against one sync process."""
    from ecosync_pipeline.lab.bench.fanout import run_fanout
    from ecosync_pipeline.lab.bench.resources import bench_redis_url

    celery = tuple(int(w) for w in workers.split(",") if w.strip()) if workers else ()
    _run_bench(
        run_fanout,
        as_json,
        sizes=sizes,
        new_orders=new_orders,
        celery_workers=celery,
        ticks=ticks,
        warmup=warmup,
        batch_size=batch_size,
        runs=runs or default_runs(),
        sync_workers=sync_workers,
        redis_url=redis_url or bench_redis_url(),
    )


@bench_command(
    "ratelimit",
    JSON_OPTION,
    shown("--calls", default=10_000, type=click.IntRange(min=10)),
    shown(
        "--processes",
        default=4,
        type=click.IntRange(min=1, max=16),
        help="Worker processes; roles go round: sync, reconcile, checks, recovery.",
    ),
    shown(
        "--time-scale",
        default=100.0,
        type=click.FloatRange(min=1, max=2000),
        help="Shortens every window of the budget and of the simulator alike (100: a day "
        "lasts 864 s; 10,000 calls then take about 16 minutes). Much higher and the machine, "
        "not the budget, sets the pace.",
    ),
    REDIS_OPTION,
)
def ratelimit_bench(
    as_json: bool, calls: int, processes: int, time_scale: float, redis_url: str | None
) -> None:
    """Mixed traffic of several processes on one store under its shared budget, against
    the simulator's four windows: 429s, throughput against the best the budget allows."""
    from ecosync_pipeline.lab.bench.ratelimit import run_ratelimit_bench
    from ecosync_pipeline.lab.bench.resources import bench_redis_url

    _run_bench(
        run_ratelimit_bench,
        as_json,
        calls=calls,
        time_scale=time_scale,
        processes=processes,
        redis_url=redis_url or bench_redis_url(),
    )


@bench_command(
    "soak",
    shown(
        "--minutes",
        default=10.0,
        type=click.FloatRange(min=0.1),
        help="Minutes of churn per seed (then the drain, the final sync and sweep).",
    ),
    shown("--seeds", default=3, type=click.IntRange(min=1)),
    shown(
        "--stores",
        default=4,
        type=click.IntRange(1, 4),
        help="Stores per seed: pages and cursor mode by turns (NATUR, DILST, PURNA, MGSTR).",
    ),
    shown(
        "--orders",
        default=2_000,
        type=click.IntRange(min=10),
        help="Orders each store starts with (ecosync imports them during the churn).",
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="Also exit 1 when the final sync alone left an order missing (the sweep not counted).",
    ),
    REDIS_OPTION,
    JSON_OPTION,
)
def soak(
    minutes: float,
    seeds: int,
    stores: int,
    orders: int,
    strict: bool,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Everything at once (the shop moving, webhooks with faults, the receiver killed, Redis
    flushed, database connections killed, syncs, reconciliations and status refreshes),
    then the table against EcoManager id by id. Exits 1 when anything differs."""
    from ecosync_pipeline.lab.bench.soak import SoakPlan, run_soak

    plan = SoakPlan(minutes=minutes, stores=stores, orders=orders)
    with _quiet_core():
        report = run_soak(
            seeds=seeds, plan=plan, redis_url=redis_url, strict=strict, progress=_progress
        )
    _emit(report, as_json)
    if report.failed:
        raise SystemExit(1)


@bench_command(
    "frontier",
    JSON_OPTION,
    shown(
        "--orders",
        default=181_601,
        type=click.IntRange(min=1000),
        help="Orders of the store imported in cursor mode (NATUR's 181,601: 1,817 pages).",
    ),
    shown(
        "--time-scale",
        default=30.0,
        type=click.FloatRange(min=1, max=600),
        help="Shortens the budget's windows, the sync schedule and each run's time budget "
        "alike (30: a scaled hour lasts 2 minutes; the NATUR-sized import takes about 5).",
    ),
    REDIS_OPTION,
)
def frontier_bench(as_json: bool, orders: int, time_scale: float, redis_url: str | None) -> None:
    """The frontier: the webhook gap after the next sync (pages, cursor), a NATUR-sized
    cursor import across runs under the default windows, an early null cursor."""
    from ecosync_pipeline.lab.bench.frontier import run_frontier_bench
    from ecosync_pipeline.lab.bench.resources import bench_redis_url

    _run_bench(
        run_frontier_bench,
        as_json,
        orders=orders,
        time_scale=time_scale,
        redis_url=redis_url or bench_redis_url(),
    )
