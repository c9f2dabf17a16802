"""`ecosync bench fanout`: one tick of the real schedule for many stores, against the floor.

For each number of stores, a world of its own: that many small simulated stores (served
over HTTP by a simulator process), a PostgreSQL orders database and a PostgreSQL Dagster
instance created for the benchmark and dropped after it, the benchmark's Redis database
and a backup file in a temporary folder. Every store is synced once first, so a tick
finds them idle (or with ``new_orders`` new orders each, added before every tick).

- floor: the same stores synced by one ``ecosync sync --workers W`` process, timed from
  its start to its exit;
- tick: ``dagster-daemon run`` with the schedule every minute, the code location served
  by ``dagster code-server start`` (data/workspace-production.yaml), Dagster's database
  reached through PgBouncer (data/pgbouncer.ini); from a tick's scheduled time to the
  end of its last run, through the run queue (runs launched as processes on this
  machine by Dagster's default launcher) or, with Celery workers, through RabbitMQ to
  ``celery`` workers.

The first ``warmup`` ticks after the daemon starts are printed apart ("warm-up s") and
left out: the first tick after the daemon starts finds the code server, PgBouncer's pool
and the page cache cold, as a deployment does once after it starts. Each figure is the
median of the ``ticks`` ticks after them; the runs and processes started, API calls
(counted by the simulator), the peak memory of the daemon's and workers' process trees,
and the orders missing and duplicated afterwards (every store's ids compared with the
simulator's) are those of the median tick.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy import func, select

from ecosync_pipeline.asgi import free_port
from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.partitions import MIN_BATCH_SIZE, store_batches
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.lab.bench.processes import (
    MemorySampler,
    celery_worker_argv,
    code_server_argv,
    daemon_argv,
    instance_home,
    started,
    tree,
    wait_for_code_server,
)
from ecosync_pipeline.lab.bench.report import Spread, format_table, machine
from ecosync_pipeline.lab.bench.resources import (
    claimed_redis,
    temporary_folder,
    temporary_postgres,
)
from ecosync_pipeline.lab.bench.simserver import ServedSimulator, served_simulator
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import orders as orders_table
from ecosync_pipeline.sync.batch import sync_batch

logger = logging.getLogger(__name__)

ORDERS_PER_STORE = 30
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
# The tags Dagster puts on every run a schedule tick asks for.
SCHEDULE_NAME_TAG = "dagster/schedule_name"
SCHEDULED_EXECUTION_TIME_TAG = ".dagster/scheduled_execution_time"
TICK_ID_TAG = "dagster/tick"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass(frozen=True)
class FanoutRow:
    """One line of the report: a number of stores, new orders each, and how runs execute."""

    stores: int
    new_orders: int
    mode: str
    tick: Spread
    warmup: tuple[float, ...]
    """Seconds of the ticks left out of the medians (the first after the daemon starts)."""
    floor: Spread
    to_created: float
    to_started: float
    runs: int
    failed_runs: int
    processes: int
    api_calls: int
    floor_api_calls: int
    peak_mb: float
    missing: int
    duplicated: int

    @property
    def ratio(self) -> float:
        return self.tick.median / self.floor.median if self.floor.median else 0.0


@dataclass
class FanoutReport:
    """Every row, and the settings they were measured with."""

    batch_size: int
    runs: int
    sync_workers: int
    ticks: int
    warmup: int = 0
    rows: list[FanoutRow] = field(default_factory=list)

    def table(self) -> str:
        header = (
            f"one tick of order_sync_schedule through dagster-daemon (medians of {self.ticks} "
            f"ticks after {self.warmup} warm-up; at most {self.batch_size} stores a run and at "
            f"least {self.runs} runs when each gets {MIN_BATCH_SIZE}, {self.sync_workers} at a "
            "time in a run), against the floor: the same stores in one `ecosync sync --workers "
            f"{self.sync_workers}` process"
        )
        columns = (
            "stores", "new/store", "runs on", "tick s", "(min-max)", "warm-up s", "floor s",
            "ratio",
            "to 1st run s", "to last start s",
            "runs", "failed", "processes", "API calls", "floor calls", "peak MB",
            "missing", "duplicated",
        )  # fmt: skip
        rows = [
            (
                f"{r.stores:,}",
                str(r.new_orders),
                r.mode,
                f"{r.tick.median:.1f}",
                f"{r.tick.minimum:.1f}-{r.tick.maximum:.1f}",
                ", ".join(f"{s:.1f}" for s in r.warmup) or "-",
                f"{r.floor.median:.1f}",
                f"{r.ratio:.2f}",
                f"{r.to_created:.1f}",
                f"{r.to_started:.1f}",
                str(r.runs),
                str(r.failed_runs),
                str(r.processes),
                f"{r.api_calls:,}",
                f"{r.floor_api_calls:,}",
                f"{r.peak_mb:.0f}",
                str(r.missing),
                str(r.duplicated),
            )
            for r in self.rows
        ]
        return header + "\n" + format_table(columns, rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": machine(),
            "batch_size": self.batch_size,
            "runs": self.runs,
            "sync_workers": self.sync_workers,
            "ticks": self.ticks,
            "warmup": self.warmup,
            "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows],
        }


@dataclass
class World:
    """One size's stores, databases, simulator and the variables every process gets."""

    folder: Path
    settings: Settings
    sim: ServedSimulator
    stores: list[str]
    environ: dict[str, str]


def _specs(count: int) -> list[StoreSpec]:
    return [
        StoreSpec(
            f"S{i:05d}",
            name=f"Store {i}",
            first_id=1,
            count=ORDERS_PER_STORE,
            token_env=f"ECOSYNC_BENCH_TOKEN_S{i:05d}",
        )
        for i in range(count)
    ]


@contextmanager
def world(
    count: int, redis_url: str, batch_size: int, sync_workers: int, runs: int = 1
) -> Iterator[World]:
    """``count`` stores served, synced once, with their databases; removed afterwards."""
    with ExitStack() as stack:
        folder = stack.enter_context(temporary_folder("ecosync-fanout-"))
        stack.enter_context(claimed_redis(redis_url)).flush()
        orders_url = stack.enter_context(temporary_postgres())
        specs = _specs(count)
        sim = stack.enter_context(served_simulator(specs))
        stores_file = folder / "stores.yaml"
        entries = [
            {
                "identifier": s.identifier,
                "name": s.name,
                "base_url": f"{sim.url}/{s.identifier}",
                "token_env": s.token_env,
                "requests_per_second": 100,
                "import_per_page": 20,
            }
            for s in specs
        ]
        stores_file.write_text(yaml.safe_dump({"stores": entries}), encoding="utf-8")
        settings = Settings(orders_url, redis_url, str(stores_file), str(folder / "backup.json"))
        environ = {
            "ECOSYNC_DATABASE_URL": orders_url,
            "ECOSYNC_REDIS_URL": redis_url,
            "ECOSYNC_STORES_FILE": str(stores_file),
            "ECOSYNC_BACKUP_PATH": settings.backup_path,
            "ECOSYNC_SYNC_CRON": "* * * * *",
            # The reconciliation and status refresh (hourly, half-hourly) kept out of the
            # measured minutes: the figure is the sync tick's.
            "ECOSYNC_RECONCILE_CRON": "0 0 1 1 *",
            "ECOSYNC_STATUS_CRON": "0 0 1 1 *",
            "ECOSYNC_SYNC_BATCH_SIZE": str(batch_size),
            "ECOSYNC_SYNC_RUNS": str(runs),
            "ECOSYNC_SYNC_WORKERS": str(sync_workers),
            **{s.token_env: sim.token(s.identifier) for s in specs},
        }
        saved = {k: os.environ.get(k) for k in environ}
        os.environ.update(environ)
        stack.callback(_restore_environ, saved)
        stores = [s.identifier for s in specs]
        _sync_all(settings, stores, sync_workers)
        yield World(folder, settings, sim, stores, environ)


def _restore_environ(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _sync_all(settings: Settings, stores: Sequence[str], workers: int) -> None:
    with Runtime.from_settings(settings) as runtime:
        errors = [o for o in sync_batch(runtime, stores, workers=workers, check=False) if o.error]
    if errors:
        raise EcosyncError(f"{len(errors)} stores failed their first sync: {errors[0].error}")


def api_calls(w: World) -> int:
    """Orders requests the simulator has answered, all stores together."""
    return sum(int(w.sim.control.stats(s)["total"]) for s in w.stores)


def add_orders(w: World, k: int) -> None:
    for store in w.stores if k else ():
        w.sim.control.add_orders(store, k)


def reconcile(w: World) -> tuple[int, int]:
    """Orders the simulator serves that the database lacks, and rows stored twice."""
    with Runtime.from_settings(w.settings) as runtime, runtime.engine.connect() as conn:
        rows = conn.execute(select(orders_table.c.store, orders_table.c.order_id)).all()
        total = conn.execute(select(func.count()).select_from(orders_table)).scalar_one()
    held: dict[str, set[int]] = {}
    for store, order_id in rows:
        held.setdefault(store, set()).add(order_id)
    distinct = sum(len(ids) for ids in held.values())
    missing = sum(len(set(w.sim.control.ids(s)) - held.get(s, set())) for s in w.stores)
    return missing, int(total) - distinct


def floor_once(w: World, sync_workers: int, k: int) -> tuple[float, int]:
    """Seconds of one ``ecosync sync`` process over every store, and its API calls."""
    add_orders(w, k)
    calls = api_calls(w)
    started_at = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ecosync")), "sync", "--workers", str(sync_workers)],
        cwd=w.folder,
        env={**os.environ, **w.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.monotonic() - started_at
    if done.returncode != 0:
        raise EcosyncError(f"the floor's `ecosync sync` failed: {done.stderr[-2000:]}")
    return seconds, api_calls(w) - calls


@dataclass(frozen=True)
class TickFigures:
    seconds: float
    to_created: float
    """From the scheduled time to the tick's first run created (the schedule's evaluation)."""
    to_started: float
    """From the first run created to the last run started (queue, launch, process start)."""
    runs: int
    failed_runs: int
    processes: int
    api_calls: int
    peak_mb: float
    missing: int
    duplicated: int


def _tick_runs(instance: DagsterInstance, after: float) -> list[Any]:
    """The runs of the first schedule tick created after ``after``."""
    records = instance.get_run_records(
        RunsFilter(
            tags={SCHEDULE_NAME_TAG: "order_sync_schedule"},
            created_after=datetime.fromtimestamp(after, tz=timezone.utc),
        )
    )
    if not records:
        return []
    first = min(records, key=lambda r: r.create_timestamp.timestamp())
    tick = first.dagster_run.tags.get(TICK_ID_TAG)
    return [r for r in records if r.dagster_run.tags.get(TICK_ID_TAG) == tick]


def _cancel_other_ticks(instance: DagsterInstance, after: float, tick: str | None) -> None:
    """Cancel queued runs of ticks that are not the one measured.

    A tick slower than the cron's minute has the next tick's runs wait behind it (one run
    per batch at a time); left alone, they would run inside the next measurement.
    """
    queued = instance.get_run_records(
        RunsFilter(
            tags={SCHEDULE_NAME_TAG: "order_sync_schedule"}, statuses=[DagsterRunStatus.QUEUED]
        )
    )
    for record in queued:
        run = record.dagster_run
        other = run.tags.get(TICK_ID_TAG) != tick
        if record.create_timestamp.timestamp() < after or (tick is not None and other):
            instance.run_coordinator.cancel_run(run.run_id)


def wait_for_tick(
    instance: DagsterInstance, after: float, expected: int, timeout: float
) -> list[Any]:
    """Every run of the next tick, once all of them have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _tick_runs(instance, after)
        tick = runs[0].dagster_run.tags.get(TICK_ID_TAG) if runs else None
        _cancel_other_ticks(instance, after, tick)
        if len(runs) >= expected and all(r.dagster_run.status in FINISHED for r in runs):
            return runs
        time.sleep(0.5)
    raise EcosyncError(
        f"no complete schedule tick within {timeout:.0f} s; see the daemon's log in the "
        "benchmark folder (kept only while it runs)"
    )


def measure_tick(
    w: World, instance: DagsterInstance, roots: Sequence[int], k: int, expected: int
) -> TickFigures:
    """Wait for the next tick after adding ``k`` orders a store, and measure it."""
    add_orders(w, k)
    calls = api_calls(w)
    before = tree(roots)
    after = time.time()
    with MemorySampler(roots) as sampler:
        runs = wait_for_tick(instance, after, expected, timeout=600)
    scheduled = datetime.fromisoformat(runs[0].dagster_run.tags[SCHEDULED_EXECUTION_TIME_TAG])
    end = max(float(r.end_time or 0) for r in runs)
    created = min(r.create_timestamp.timestamp() for r in runs)
    last_start = max(float(r.start_time or created) for r in runs)
    missing, duplicated = reconcile(w)
    return TickFigures(
        seconds=end - scheduled.timestamp(),
        to_created=created - scheduled.timestamp(),
        to_started=last_start - created,
        runs=len(runs),
        failed_runs=sum(r.dagster_run.status != DagsterRunStatus.SUCCESS for r in runs),
        processes=len(sampler.seen - before),
        api_calls=api_calls(w) - calls,
        peak_mb=sampler.peak / 1e6,
        missing=missing,
        duplicated=duplicated,
    )


def _wait_for_daemon(instance: DagsterInstance, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = instance.get_daemon_statuses(["SCHEDULER", "QUEUED_RUN_COORDINATOR"])
        if all(s.healthy for s in statuses.values()):
            return
        time.sleep(1)
    raise EcosyncError("dagster-daemon did not report healthy within 120 s")


def measure_mode(
    w: World, celery_workers: int | None, k: int, ticks: int, expected: int, warmup: int = 0
) -> tuple[list[TickFigures], list[TickFigures]]:
    """``warmup`` then ``ticks`` ticks through the run queue (None) or through that many
    Celery workers: the warm-up ticks' figures, and the others'."""
    with ExitStack() as stack:
        dagster_url = stack.enter_context(temporary_postgres())
        mode_folder = w.folder / f"mode-{celery_workers or 0}"
        port = free_port()
        home, dagster_env = instance_home(
            mode_folder, dagster_url, celery=bool(celery_workers), code_server_port=port
        )
        environ = {**os.environ, **w.environ, **dagster_env}
        os.environ.update(dagster_env)
        # Created here first, so the daemon and the workers do not race to create its schema.
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        server = stack.enter_context(
            started(code_server_argv(port), environ, mode_folder, mode_folder / "code-server.log")
        )
        wait_for_code_server(port)
        roots: list[int] = [server.pid]
        if celery_workers:
            queue = f"ecosync-bench-{uuid.uuid4().hex[:8]}"
            environ.update(ECOSYNC_CELERY_BROKER=DEFAULT_BROKER, ECOSYNC_CELERY_QUEUE=queue)
            for i in range(celery_workers):
                argv = celery_worker_argv(f"bench{i}", queue, DEFAULT_BROKER)
                worker = stack.enter_context(
                    started(argv, environ, mode_folder, mode_folder / f"worker{i}.log")
                )
                roots.append(worker.pid)
        daemon = stack.enter_context(
            started(daemon_argv(mode_folder), environ, mode_folder, mode_folder / "daemon.log")
        )
        roots.append(daemon.pid)
        _wait_for_daemon(instance)
        figures = [measure_tick(w, instance, roots, k, expected) for _ in range(warmup + ticks)]
        return figures[:warmup], figures[warmup:]


def _median_tick(figures: Sequence[TickFigures]) -> TickFigures:
    ordered = sorted(figures, key=lambda f: f.seconds)
    return ordered[len(ordered) // 2]


def run_fanout(
    sizes: Sequence[int],
    *,
    new_orders: int,
    celery_workers: Sequence[int],
    ticks: int,
    batch_size: int,
    runs: int,
    sync_workers: int,
    redis_url: str,
    warmup: int = 1,
    progress: Any = None,
) -> FanoutReport:
    """Measure every size in every mode; see the module docstring."""
    say = progress or (lambda message: None)
    report = FanoutReport(
        batch_size=batch_size, runs=runs, sync_workers=sync_workers, ticks=ticks, warmup=warmup
    )
    modes: list[int | None] = list(celery_workers) or [None]
    for size in sizes:
        say(f"{size} stores: serving and syncing them once")
        with world(size, redis_url, batch_size, sync_workers, runs) as w:
            expected = len(store_batches(w.stores, w.stores, batch_size, runs))
            floors = [floor_once(w, sync_workers, new_orders) for _ in range(ticks)]
            floor = Spread.of([s for s, _ in floors])
            floor_calls = int(statistics.median(c for _, c in floors))
            say(f"{size} stores: floor {floor.median:.1f} s")
            for mode in modes:
                label = f"celery x{mode}" if mode else "run queue"
                warm, figures = measure_mode(w, mode, new_orders, ticks, expected, warmup)
                median = _median_tick(figures)
                every = warm + figures  # a warm-up tick's lost orders count too
                say(f"{size} stores, {label}: tick {median.seconds:.1f} s")
                report.rows.append(
                    FanoutRow(
                        stores=size,
                        new_orders=new_orders,
                        mode=label,
                        tick=Spread.of([f.seconds for f in figures]),
                        warmup=tuple(f.seconds for f in warm),
                        floor=floor,
                        to_created=median.to_created,
                        to_started=median.to_started,
                        runs=median.runs,
                        failed_runs=max(f.failed_runs for f in every),
                        processes=median.processes,
                        api_calls=median.api_calls,
                        floor_api_calls=floor_calls,
                        peak_mb=median.peak_mb,
                        missing=max(f.missing for f in every),
                        duplicated=max(f.duplicated for f in every),
                    )
                )
    return report
