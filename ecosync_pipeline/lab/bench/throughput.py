"""`ecosync bench sync`: orders per second, fetch only against fetch plus upsert, and memory.

Against the simulator (in its own process, over HTTP), with no latency and with a
latency per request, for a store of ``throughput_orders`` orders read ``per_page`` at a
time, each run:

    fetch only       the client reads every page (no database, no positions)
    fetch + upsert   a real first sync_store: fetch, upsert and commit each page, then
                     write the position to Redis and to the JSON backup

The medians of ``runs`` runs give orders per second and their ratio (goal: >= 0.9 with
20 ms of latency). The sync's time is split (fetch and parse, SQL statements, the rest
of the commit and loop, Redis write, JSON backup write), and one zero-latency sync is
profiled (cProfile, top costs). Then one store of each size in ``orders`` is synced
from scratch (with the store's import page size) under tracemalloc, for the peak of
traced memory and the growth of the process's RSS: both should stay flat whatever the
size, since a page is written and dropped before the next one is read.

The orders database is a PostgreSQL database created for the run (and dropped), unless
``database_url`` names one: then only the benchmark's own stores are written and deleted.
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import MAX_PER_PAGE, Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline.lab.bench.report import Spread, format_table, machine
from ecosync_pipeline.lab.bench.resources import (
    BENCH_REDIS_MARKER,
    BenchRedis,
    bench_redis_url,
    claimed_redis,
    temporary_folder,
    temporary_postgres,
)
from ecosync_pipeline.lab.bench.simserver import (
    BENCH_REQUESTS_PER_SECOND,
    ServedSimulator,
    served_simulator,
)
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseLayer
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.layer import Written
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.storage import dialect, make_engine, migrate, store_summary
from ecosync_pipeline.storage.schema import orders as orders_table
from ecosync_pipeline.sync.engine import sync_store

logger = logging.getLogger(__name__)

DEFAULT_ORDERS: tuple[int, ...] = (10_000, 200_000)
DEFAULT_RUNS = 5
DEFAULT_LATENCIES_MS: tuple[float, ...] = (0.0, 20.0)
DEFAULT_PER_PAGE = 20
GOAL_RATIO = 0.9
GOAL_LATENCY_MS = 20.0
PROFILE_TOP = 15


# -- instrumented pieces: the real classes, timed ------------------------------------------


@dataclass
class Split:
    """Seconds spent in each part of one sync run.

    The engine fetches the next page in a thread while it writes the current one, so
    ``fetch`` overlaps the rest; the writer's parts (sql, commit, redis, json) and
    ``waiting`` (for the fetch, plus the loop itself) add up to ``total``.
    """

    fetch: float = 0.0
    sql: float = 0.0
    commit: float = 0.0
    redis: float = 0.0
    json: float = 0.0
    total: float = 0.0

    @property
    def waiting(self) -> float:
        """The writer's time outside its own work: waiting for the fetch, and the loop."""
        return max(0.0, self.total - self.sql - self.commit - self.redis - self.json)

    def parts(self) -> dict[str, float]:
        """Seconds per part, the wall time first."""
        return {
            "wall": self.total,
            "fetch (thread)": self.fetch,
            "sql": self.sql,
            "commit": self.commit,
            "redis": self.redis,
            "json": self.json,
            "wait+loop": self.waiting,
        }


class _TimedClient(EcoManagerClient):
    """The client, adding each fetch's seconds (request, wait and parse) to a Split."""

    split: Split

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        started = time.perf_counter()
        try:
            return super().fetch_page(page, per_page)
        finally:
            self.split.fetch += time.perf_counter() - started


class _TimedRedis(RedisLayer):
    split: Split

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        started = time.perf_counter()
        try:
            return super().write_many(positions, recovery=recovery, generation=generation)
        finally:
            self.split.redis += time.perf_counter() - started


class _TimedBackup(JsonBackup):
    split: Split

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        started = time.perf_counter()
        try:
            return super().write_many(positions, recovery=recovery, generation=generation)
        finally:
            self.split.json += time.perf_counter() - started


def _time_database(engine: Engine, split: Callable[[], Split]) -> None:
    """Add each statement's and each commit's time to the current Split (this engine only)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: Any, params: Any, ctx: Any, many: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: Any, params: Any, ctx: Any, many: Any) -> None:
        split().sql += time.perf_counter() - conn.info["bench_started"].pop()

    dialect = engine.dialect
    plain_commit = dialect.do_commit

    def timed_commit(dbapi_connection: Any) -> None:
        started = time.perf_counter()
        try:
            plain_commit(dbapi_connection)
        finally:
            split().commit += time.perf_counter() - started

    # An attribute of this benchmark's own engine's dialect: nothing else is affected.
    dialect.do_commit = timed_commit  # type: ignore[method-assign]


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputRow:
    """Fetch only against fetch + upsert at one latency: medians of several runs."""

    latency_ms: float
    orders: int
    per_page: int
    fetch_rate: Spread
    sync_rate: Spread
    split_ms_per_page: dict[str, float]
    """The median sync run's milliseconds per page, per part (see Split)."""

    @property
    def ratio(self) -> float:
        """Median fetch + upsert rate over median fetch-only rate."""
        return self.sync_rate.median / self.fetch_rate.median if self.fetch_rate.median else 0.0


@dataclass(frozen=True)
class MemoryRow:
    """One first sync of ``orders`` orders under tracemalloc."""

    orders: int
    per_page: int
    seconds: float
    tracemalloc_peak_mb: float
    rss_growth_mb: float
    rss_peak_growth_mb: float | None


@dataclass
class SyncBenchReport:
    """Throughput rows, the profile of one sync, and the memory rows."""

    throughput: list[ThroughputRow]
    memory: list[MemoryRow]
    profile: list[dict[str, Any]]
    runs: int
    database: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def goal_met(self) -> bool | None:
        """fetch + upsert >= 0.9 of fetch only at 20 ms (None when not measured)."""
        rows = [r for r in self.throughput if r.latency_ms == GOAL_LATENCY_MS]
        return all(r.ratio >= GOAL_RATIO for r in rows) if rows else None

    def table(self) -> str:
        """The three tables (throughput, where the time goes, memory) and notes."""
        rates = format_table(
            (
                "latency ms",
                "orders",
                "per page",
                "fetch only o/s",
                "(min-max)",
                "fetch+upsert o/s",
                "(min-max)",
                "ratio",
            ),
            [
                (
                    r.latency_ms,
                    r.orders,
                    r.per_page,
                    round(r.fetch_rate.median),
                    f"{r.fetch_rate.minimum:,.0f}-{r.fetch_rate.maximum:,.0f}",
                    round(r.sync_rate.median),
                    f"{r.sync_rate.minimum:,.0f}-{r.sync_rate.maximum:,.0f}",
                    round(r.ratio, 3),
                )
                for r in self.throughput
            ],
        )
        parts = list(self.throughput[0].split_ms_per_page) if self.throughput else []
        split = format_table(
            ("latency ms", "fetch-only ms/pg", *[f"{p} ms/pg" for p in parts]),
            [
                (
                    r.latency_ms,
                    round(1000 * r.per_page / r.fetch_rate.median, 2),
                    *[round(r.split_ms_per_page[p], 2) for p in parts],
                )
                for r in self.throughput
            ],
        )
        memory = format_table(
            (
                "orders",
                "per page",
                "seconds",
                "tracemalloc peak MB",
                "RSS growth MB",
                "RSS peak +MB",
            ),
            [
                (
                    m.orders,
                    m.per_page,
                    m.seconds,
                    m.tracemalloc_peak_mb,
                    m.rss_growth_mb,
                    m.rss_peak_growth_mb,
                )
                for m in self.memory
            ],
        )
        profile = format_table(
            ("function", "calls", "tottime s", "cumtime s"),
            [(p["function"], p["calls"], p["tottime"], p["cumtime"]) for p in self.profile],
        )
        goal = self.goal_met()
        lines = [
            f"orders per second, medians of {self.runs} runs (database {self.database}):",
            rates,
            "",
            "where a fetch + upsert run spends its time (its median run, ms per page): the "
            "next page is fetched in a thread while the writer runs sql, commit, redis and "
            "json; wait+loop = the writer waiting for that fetch",
            split,
            "",
            "top costs of one fetch + upsert run at 0 ms latency (cProfile of the writer "
            "thread, by own time; the prefetch thread is not profiled):",
            profile,
            "",
            "memory of one first sync (import page size), traced:",
            memory,
            "",
            f"goal: fetch + upsert >= {GOAL_RATIO} x fetch only at {GOAL_LATENCY_MS:g} ms: "
            + ("not measured" if goal is None else ("met" if goal else "NOT met")),
            *self.notes,
            f"whole command {self.seconds:.1f} s on {machine()['cpus']} CPUs",
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "benchmark": "sync",
            "runs": self.runs,
            "database": self.database,
            "seconds": round(self.seconds, 3),
            "goal": {"ratio": GOAL_RATIO, "latency_ms": GOAL_LATENCY_MS, "met": self.goal_met()},
            "machine": machine(),
            "throughput": [
                {
                    "latency_ms": r.latency_ms,
                    "orders": r.orders,
                    "per_page": r.per_page,
                    "fetch_orders_per_second": r.fetch_rate.as_dict(),
                    "sync_orders_per_second": r.sync_rate.as_dict(),
                    "ratio": r.ratio,
                    "split_ms_per_page": r.split_ms_per_page,
                }
                for r in self.throughput
            ],
            "profile": self.profile,
            "memory": [asdict(m) for m in self.memory],
            "notes": self.notes,
        }


# -- the measurements ----------------------------------------------------------------------------


@dataclass
class _Rig:
    """Everything a run needs: simulator, database, the instrumented chain."""

    sim: ServedSimulator
    engine: Engine
    redis: BenchRedis
    backup_path: Path
    current: Split = field(default_factory=Split)

    def chain(self, store: Store) -> PositionChain:
        """A chain whose Redis and JSON writes add their time to the current Split."""
        redis_layer = _TimedRedis.from_url(self.redis.url)
        assert isinstance(redis_layer, _TimedRedis)  # from_url builds cls
        redis_layer.split = self.current
        backup = _TimedBackup(self.backup_path)
        backup.split = self.current
        return PositionChain([store], redis_layer, backup, DatabaseLayer(self.engine))

    def client(self, store: Store) -> _TimedClient:
        """A never-waiting client whose fetches add their time to the current Split."""
        client = _TimedClient(
            store,
            self.sim.token(store.identifier),
            rate_limiter=RateLimiter(BENCH_REQUESTS_PER_SECOND),
        )
        client.split = self.current
        return client

    def clear(self, store: Store) -> None:
        """Forget the store: its orders, its Redis position and the JSON backup."""
        with self.engine.begin() as conn:
            conn.execute(delete(orders_table).where(orders_table.c.store == store.identifier))
        self.redis.flush()
        self.backup_path.unlink(missing_ok=True)


def _fetch_only(rig: _Rig, store: Store) -> tuple[int, float]:
    rig.current = Split()
    orders = 0
    started = time.perf_counter()
    with rig.client(store) as client:
        page_no = 1
        while True:
            page = client.fetch_page(page_no, store.per_page)
            orders += len(page.orders)
            if page.is_end:
                break
            page_no += 1
    return orders, time.perf_counter() - started


def _sync_once(rig: _Rig, store: Store) -> tuple[int, float, Split]:
    rig.clear(store)
    split = rig.current = Split()
    chain = rig.chain(store)
    try:
        with rig.client(store) as client:
            started = time.perf_counter()
            result = sync_store(store, chain=chain, client=client, engine=rig.engine)
            split.total = time.perf_counter() - started
    finally:
        chain.close()
    return result.orders_new, split.total, split


def _throughput(
    rig: _Rig, store: Store, latency_ms: float, runs: int, say: Callable[[str], None]
) -> ThroughputRow:
    rig.sim.control.set_faults(store.identifier, latency_ms=latency_ms)
    fetch_rates: list[float] = []
    sync_rates: list[float] = []
    splits: list[Split] = []
    pages = 0
    orders = 0
    for run in range(runs):
        orders, seconds = _fetch_only(rig, store)
        fetch_rates.append(orders / seconds)
        new, seconds, split = _sync_once(rig, store)
        if new != orders:
            raise ConfigError(
                f"store {store.identifier}: the sync wrote {new} new orders, the store "
                f"serves {orders}; is the benchmark database shared with another run?"
            )
        sync_rates.append(new / seconds)
        splits.append(split)
        pages = -(-orders // store.per_page)
        say(
            f"latency {latency_ms:g} ms run {run + 1}/{runs}: fetch {fetch_rates[-1]:,.0f} o/s, "
            f"fetch+upsert {sync_rates[-1]:,.0f} o/s"
        )
    rig.sim.control.set_faults(store.identifier, latency_ms=0)
    median = sorted(splits, key=lambda s: s.total)[len(splits) // 2]
    per_page = {k: v * 1000 / max(1, pages) for k, v in median.parts().items()}
    return ThroughputRow(
        latency_ms=latency_ms,
        orders=orders,
        per_page=store.per_page,
        fetch_rate=Spread.of(fetch_rates),
        sync_rate=Spread.of(sync_rates),
        split_ms_per_page=per_page,
    )


def _profile(rig: _Rig, store: Store) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    rig.clear(store)
    rig.current = Split()
    chain = rig.chain(store)
    try:
        with rig.client(store) as client:
            profiler.enable()
            sync_store(store, chain=chain, client=client, engine=rig.engine)
            profiler.disable()
    finally:
        chain.close()
    stats = pstats.Stats(profiler)
    entries = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_, calls, tottime, cumtime, _) in raw.items():
        entries.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls": calls,
                "tottime": round(tottime, 3),
                "cumtime": round(cumtime, 3),
            }
        )
    entries.sort(key=lambda e: e["tottime"], reverse=True)
    return entries[:PROFILE_TOP]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "ecosync_pipeline/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _rss_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: writing 5 to clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _memory(rig: _Rig, store: Store) -> MemoryRow:
    rig.clear(store)
    rig.current = Split()
    chain = rig.chain(store)
    peak_reset = _reset_peak_rss()
    rss_before = _rss_kib("VmRSS") or 0
    tracemalloc.start()
    try:
        with rig.client(store) as client:
            started = time.perf_counter()
            result = sync_store(store, chain=chain, client=client, engine=rig.engine)
            seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        chain.close()
    rss_after = _rss_kib("VmRSS") or 0
    hwm = _rss_kib("VmHWM") if peak_reset else None
    count = store_summary(rig.engine, store.identifier).order_count
    if count != result.orders_new:
        raise ConfigError(
            f"store {store.identifier}: {count} orders stored, {result.orders_new} new"
        )
    rig.clear(store)
    return MemoryRow(
        orders=result.orders_new,
        per_page=store.per_page,
        seconds=round(seconds, 2),
        tracemalloc_peak_mb=round(peak / 2**20, 2),
        rss_growth_mb=round((rss_after - rss_before) / 1024, 2),
        rss_peak_growth_mb=round((hwm - rss_before) / 1024, 2) if hwm is not None else None,
    )


@contextmanager
def _database(
    url: str | None, admin_url: str | None, stores: Sequence[str]
) -> Iterator[tuple[str, Engine]]:
    """The orders database: the given one (refused if our stores have orders) or a new one."""
    with ExitStack() as stack:
        target = url or stack.enter_context(temporary_postgres(admin_url))
        engine = make_engine(target)
        stack.callback(engine.dispose)
        migrate(engine)
        if url is not None:
            for sid in stores:
                if store_summary(engine, sid).order_count:
                    raise ConfigError(
                        f"the database at --database-url already holds orders of store {sid}; "
                        "the benchmark only writes stores it owns: use an empty database"
                    )
        yield target, engine


def run_sync_bench(
    *,
    orders: Sequence[int] = DEFAULT_ORDERS,
    runs: int = DEFAULT_RUNS,
    latencies_ms: Sequence[float] = DEFAULT_LATENCIES_MS,
    throughput_orders: int | None = None,
    per_page: int = DEFAULT_PER_PAGE,
    database_url: str | None = None,
    postgres_admin_url: str | None = None,
    redis_url: str | None = None,
    redis_marker: str = BENCH_REDIS_MARKER,
    profile: bool = True,
    memory: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SyncBenchReport:
    """Measure fetch-only and fetch + upsert rates, the sync's split, profile and memory.

    ``throughput_orders`` (default: the smallest of ``orders``) is the store size of the
    rate runs; every size in ``orders`` gets one traced memory run.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if not orders:
        raise ValueError("give at least one store size in orders")
    say = progress or (lambda message: logger.info("%s", message))
    started = time.perf_counter()
    size = throughput_orders or min(orders)
    specs = [StoreSpec(f"T{size}", count=size, gap_rate=0.03)]
    specs += [StoreSpec(f"M{n}", count=n, gap_rate=0.03) for n in dict.fromkeys(orders)]
    with ExitStack() as stack:
        folder = stack.enter_context(temporary_folder("ecosync-bench-sync-"))
        r = stack.enter_context(claimed_redis(redis_url or bench_redis_url(), redis_marker))
        target, engine = stack.enter_context(
            _database(database_url, postgres_admin_url, [s.identifier for s in specs])
        )
        sim = stack.enter_context(served_simulator(specs))
        rig = _Rig(sim, engine, r, folder / "sync-positions" / "sync-positions.json")
        _time_database(engine, lambda: rig.current)
        report = SyncBenchReport([], [], [], runs, dialect.backend(engine))
        rate_store = sim.store(specs[0].identifier, per_page=per_page)
        try:
            for latency in latencies_ms:
                report.throughput.append(_throughput(rig, rate_store, latency, runs, say))
            if profile:
                report.profile = _profile(rig, rate_store)
            rig.clear(rate_store)
            if memory:
                for spec in specs[1:]:
                    store = sim.store(spec.identifier, per_page=MAX_PER_PAGE)
                    row = _memory(rig, store)
                    report.memory.append(row)
                    say(
                        f"memory: {row.orders:,} orders, traced peak {row.tracemalloc_peak_mb} MB,"
                        f" RSS +{row.rss_growth_mb} MB"
                    )
        finally:
            if database_url is not None:
                for spec in specs:
                    rig.clear(sim.store(spec.identifier))
    report.notes.append(
        f"throughput store: {size:,} orders read {per_page} a page; memory stores read "
        f"{MAX_PER_PAGE} a page (a first import's page size); simulator in its own process"
    )
    if target.startswith("sqlite"):
        report.notes.append("database: SQLite file given with --database-url")
    report.seconds = time.perf_counter() - started
    return report
