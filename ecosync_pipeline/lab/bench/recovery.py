"""`ecosync bench recovery`: resuming after a lost position, ecosync against the old system.

For each store shape (NATUR-like: ids 1..181,601 with ~3% gaps; PURNA-like: 30,000
sparse ids from 500,000 with a mean step of 7), the orders database is loaded with
every order the simulator serves and the position is written where a finished sync
leaves it (last page, Redis and JSON). Then k new orders arrive, the position is lost
in one of two ways, and each strategy resumes:

    loss "redis"       Redis flushed, the JSON backup intact
    loss "redis+json"  Redis flushed and the JSON backup deleted (the database decides)

    ecosync         a real sync_store run over HTTP against the simulator
    page-1 restart  the original system's first strategy (baselines.restart_from_page_one)
    old fix         its later fix, lastId / 20 - 10 (baselines.old_fix)

The old system had no layers, so its two strategies behave the same for both losses
and run once per (store, k). Per row: API calls, seconds, orders missing, duplicates
(ecosync: duplicate rows in the database; baselines: "re-read", orders already in the
database that they fetched again and would insert again without an upsert), and the
goal ``calls <= ceil(k / 20) + 2 + 2 * ceil(log2(err + 1))`` where err is the distance
between the page the position's layer hints and the true resume page.

Pages the new orders do not change (all but the last of the history) are the same in
every k's run, so the page-1 restart fetches them over HTTP once per store (in the first
k's run, with their times) and replays them in the others. With ``quick`` it fetches
only the first QUICK_REAL_PAGES of them and the rest of the history is extrapolated at
the measured seconds per page (calls, missing and re-read stay exact: the ids of those
pages come from the simulator's twin).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.errors import SyncError
from ecosync_pipeline.lab.bench.baselines import BaselineRun, old_fix, restart_from_page_one
from ecosync_pipeline.lab.bench.report import format_table, machine
from ecosync_pipeline.lab.bench.resources import (
    BENCH_REDIS_MARKER,
    Backend,
    BenchRedis,
    bench_database,
    bench_redis_url,
    claimed_redis,
    temporary_folder,
)
from ecosync_pipeline.lab.bench.simserver import ServedSimulator, served_simulator
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseLayer, page_hint
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.page_size import page_for
from ecosync_pipeline.positions.redis_layer import RedisLayer
from ecosync_pipeline.storage import (
    dialect,
    duplicate_count,
    ensure_store,
    make_engine,
    migrate,
    store_summary,
)
from ecosync_pipeline.storage.schema import orders as orders_table
from ecosync_pipeline.storage.store_state import FRONTIER_STATE, prove_frontier, write_state
from ecosync_pipeline.sync.engine import sync_store

logger = logging.getLogger(__name__)

PER_PAGE = 20
DEFAULT_KS: tuple[int, ...] = (0, 15, 400, 5_000)
LOAD_BATCH = 5_000
QUICK_REAL_PAGES = 300
PRODUCTION_RATE = 4.0
"""Requests per second the original client kept to (ecomanager-api.md)."""
Loss = Literal["redis", "redis+json"]
LOSSES: tuple[Loss, ...] = ("redis", "redis+json")

RECOVERY_STORES: tuple[StoreSpec, ...] = (
    StoreSpec("NATUR", name="Natura Bio", first_id=1, last_id=181_601, gap_rate=0.03),
    StoreSpec(
        "PURNA",
        name="Purna Maison",
        first_id=500_000,
        count=30_000,
        stride=7,
        gap_rate=0.03,
        catalog="home",
    ),
)
"""The two shapes of data/stores.yaml: dense-with-gaps from 1, and sparse offset ids."""


def goal_bound(k: int, err: int, per_page: int = PER_PAGE) -> int:
    """The most API calls a resume may cost: the new pages, 2, and 2 per doubling of err."""
    return math.ceil(k / per_page) + 2 + 2 * math.ceil(math.log2(err + 1))


@dataclass(frozen=True)
class RecoveryRow:
    """One strategy resuming one store after k new orders and one kind of loss."""

    store: str
    k: int
    loss: str
    strategy: str
    calls: int
    seconds: float
    timing: str
    """How ``seconds`` was obtained: http, http+replay (history pages replayed with the
    times measured when they were fetched) or extrapolated (--quick)."""
    missing: int
    duplicates: int
    """ecosync: duplicate rows in the database; baselines: orders re-read (see module)."""
    start_page: int
    """Where the strategy began: the hint of the layer used, 1, or the id estimate."""
    true_page: int
    err: int
    bound: int
    within_bound: bool
    """Calls within the bound and nothing missing (ecosync: and no duplicate rows)."""
    source: str | None = None
    """ecosync: the layer the position came from."""
    recorded_page: int | None = None
    """Baselines: the page the strategy records as its position for the next run."""


@dataclass
class RecoveryReport:
    """Every row, the setup costs and the whole run's time."""

    rows: list[RecoveryRow]
    quick: bool
    seconds: float = 0.0
    setup_seconds: dict[str, float] = field(default_factory=dict)
    stores: dict[str, dict[str, int]] = field(default_factory=dict)
    backend: str = "postgresql"

    HEADER = (
        "store",
        "k",
        "loss",
        "strategy",
        "calls",
        "seconds",
        "timing",
        "missing",
        "dup rows / re-read",
        "start pg",
        "true pg",
        "err",
        "bound",
        "within bound",
    )

    def table(self) -> str:
        """The rows as a text table, with the legend."""
        body = format_table(
            self.HEADER,
            [
                (
                    r.store,
                    r.k,
                    r.loss,
                    r.strategy,
                    r.calls,
                    r.seconds,
                    r.timing,
                    r.missing,
                    r.duplicates,
                    r.start_page,
                    r.true_page,
                    r.err,
                    r.bound,
                    r.within_bound,
                )
                for r in self.rows
            ],
        )
        stores = "; ".join(
            f"{s}: {v['orders']:,} orders on {v['pages']:,} pages, last id {v['last_id']:,}"
            for s, v in self.stores.items()
        )
        setup = ", ".join(f"{k} {v:.1f} s" for k, v in self.setup_seconds.items())
        legend = [
            f"stores: {stores}",
            "loss: redis = Redis flushed, JSON intact; redis+json = both lost (database layer);"
            " the old system's strategies do not depend on it (a,b)",
            "dup rows / re-read: ecosync = duplicate rows in the database; baselines = orders "
            "already in the database fetched again (duplicates without an upsert)",
            "err = |start page - true resume page|; bound = ceil(k/20) + 2 + 2*ceil(log2(err+1));"
            " within bound = calls <= bound and 0 missing (ecosync: and 0 duplicate rows)",
            "timing: http = every page over HTTP; http+replay = history pages fetched over HTTP "
            "in the first k's run and replayed with their measured times; extrapolated = "
            f"--quick, only {QUICK_REAL_PAGES} history pages fetched, the rest timed at the "
            "measured mean",
            f"API time at the production limit of {PRODUCTION_RATE:g} requests/s: "
            + self._at_production_rate(),
            f"setup: {setup}; backend {self.backend}; whole command {self.seconds:.1f} s "
            f"on {machine()['cpus']} CPUs",
        ]
        return body + "\n\n" + "\n".join(legend)

    def _at_production_rate(self) -> str:
        """Per store and strategy, the most calls of any row, as time at 4 requests/s."""
        most: dict[tuple[str, str], int] = {}
        for r in self.rows:
            key = (r.store, r.strategy)
            most[key] = max(most.get(key, 0), r.calls)
        return "; ".join(
            f"{store} {strategy} <= {_duration(calls / PRODUCTION_RATE)}"
            for (store, strategy), calls in most.items()
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "benchmark": "recovery",
            "quick": self.quick,
            "seconds": round(self.seconds, 3),
            "setup_seconds": {k: round(v, 3) for k, v in self.setup_seconds.items()},
            "stores": self.stores,
            "backend": self.backend,
            "machine": machine(),
            "rows": [asdict(r) for r in self.rows],
        }


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


# -- the page-1 restart's history, fetched once per store ----------------------------------


@dataclass
class _History:
    """Pages below ``stable_below`` (unchanged by new orders): ids and fetch seconds."""

    store: str
    stable_below: int
    ids: dict[int, tuple[int, ...]] = field(default_factory=dict)
    seconds: dict[int, float | None] = field(default_factory=dict)

    def mean_seconds(self) -> float:
        real = [s for s in self.seconds.values() if s is not None]
        return sum(real) / len(real) if real else 0.0

    @property
    def real_pages(self) -> int:
        return sum(1 for s in self.seconds.values() if s is not None)


class _HistoryFetcher:
    """A PageFetcher that times live fetches and serves recorded history pages again."""

    def __init__(
        self,
        live: PageFetcher,
        history: _History,
        twin: Simulator,
        real_cap: int | None,
    ) -> None:
        self.live = live
        self.history = history
        self.twin = twin
        self.real_cap = real_cap
        self.seconds = 0.0
        self.replayed = 0
        self.estimated = 0

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        size = per_page or PER_PAGE
        h = self.history
        if page >= h.stable_below:
            return self._live(page, size)
        if page not in h.ids:
            if self.real_cap is not None and h.real_pages >= self.real_cap:
                h.ids[page] = tuple(self.twin.page_ids(h.store, page, size))
                h.seconds[page] = None
            else:
                fetched = self._live(page, size)
                h.ids[page] = tuple(fetched.ids)
                h.seconds[page] = self._last
                return fetched
        else:
            self.replayed += 1
        spent = h.seconds[page]
        if spent is None:
            self.estimated += 1
        else:
            self.seconds += spent
        orders = tuple(Order(id=i) for i in h.ids[page])
        return Page(store=h.store, number=page, per_page=size, orders=orders)

    def _live(self, page: int, size: int) -> Page:
        started = time.perf_counter()
        fetched = self.live.fetch_page(page, size)
        self._last = time.perf_counter() - started
        self.seconds += self._last
        return fetched

    def total_seconds(self) -> float:
        return self.seconds + self.estimated * self.history.mean_seconds()

    @property
    def timing(self) -> str:
        if self.estimated:
            return "extrapolated"
        return "http+replay" if self.replayed else "http"


# -- one store's setup -----------------------------------------------------------------------


@dataclass
class _Prepared:
    """A store loaded into the database, with the position a finished sync leaves."""

    store: Store
    base_ids: frozenset[int]
    base_last: int
    position: SyncPosition
    true_page: int
    history: _History


def _load_orders(engine: Engine, store: Store, ids: Sequence[int]) -> None:
    """Bulk-load the store's orders (ids only) as rows a sync would have left.

    PostgreSQL takes them by COPY, SQLite by one executemany: 176,141 rows in seconds,
    where the sync's per-page upsert (RETURNING, every column) would take most of a
    minute for a state it does not test. The rows are summarised afterwards
    (store_summary); the database layer reads them below the store's frontier.
    """
    with engine.begin() as conn:
        ensure_store(conn, store.identifier, store.name)
        # The frontier a sync of these orders would have proved (what the database layer
        # resumes from).
        prove_frontier(conn, store.identifier, max(ids, default=None))
    now = utc_now()
    if dialect.is_postgresql(engine):
        raw = engine.raw_connection()
        try:
            copy_sql = (
                "COPY orders (store, order_id, items, first_seen_at, last_seen_at) FROM STDIN"
            )
            with raw.cursor() as cur, cur.copy(copy_sql) as copy:  # type: ignore[attr-defined]
                for order_id in ids:
                    copy.write_row((store.identifier, order_id, "[]", now, now))
            raw.commit()
        finally:
            raw.close()
        return
    rows = [
        {
            "store": store.identifier,
            "order_id": order_id,
            "items": [],
            "first_seen_at": now,
            "last_seen_at": now,
        }
        for order_id in ids
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), LOAD_BATCH):
            conn.execute(orders_table.insert(), rows[start : start + LOAD_BATCH])


def _prepare(
    sim: ServedSimulator, engine: Engine, chain: PositionChain, spec: StoreSpec
) -> _Prepared:
    store = sim.store(spec.identifier, per_page=PER_PAGE)
    ids = list(sim.local.ids(spec.identifier))
    _load_orders(engine, store, ids)
    summary = store_summary(engine, store.identifier)
    if summary.order_count != len(ids) or summary.last_order_id != ids[-1]:
        raise SyncError(
            f"store {store.identifier}: the benchmark loaded {summary.order_count} orders "
            f"up to id {summary.last_order_id}, expected {len(ids)} up to {ids[-1]}"
        )
    last_page = math.ceil(len(ids) / PER_PAGE)
    on_last = sim.local.page_ids(store.identifier, last_page, PER_PAGE)
    position = SyncPosition(
        store=store.identifier,
        store_name=store.name,
        last_page=last_page,
        first_id=on_last[0],
        last_id=on_last[-1],
        last_order_id=ids[-1],
        updated_at=utc_now(),
        source="calculated",
        per_page=PER_PAGE,
        verified=True,
    )
    return _Prepared(
        store=store,
        base_ids=frozenset(ids),
        base_last=ids[-1],
        position=position,
        true_page=last_page,
        history=_History(store.identifier, stable_below=last_page),
    )


def _reset(
    p: _Prepared, k: int, sim: ServedSimulator, engine: Engine, chain: PositionChain, r: BenchRedis
) -> frozenset[int]:
    """The state a finished sync leaves, then k new orders upstream; returns their ids."""
    sim.control.reset()
    added = frozenset(sim.control.add_orders(p.store.identifier, k)) if k else frozenset()
    with engine.begin() as conn:
        conn.execute(
            delete(orders_table).where(
                orders_table.c.store == p.store.identifier,
                orders_table.c.order_id > p.base_last,
            )
        )
        # The frontier goes back with the orders: what that finished sync had proved.
        write_state(conn, p.store.identifier, FRONTIER_STATE, {"id": p.base_last})
    r.flush()
    chain.save(p.position)
    return added


def _lose(loss: Loss, chain: PositionChain, r: BenchRedis) -> None:
    r.flush()
    if loss == "redis+json":
        Path(chain.backup.location).unlink(missing_ok=True)


def _hint(loss: Loss, p: _Prepared, chain: PositionChain) -> int:
    """The page the layer that should take over hints, before verification."""
    if loss == "redis":
        backed = chain.backup.read(p.store.identifier)
        if backed is None:
            raise SyncError(f"store {p.store.identifier}: the JSON backup lost its entry")
        return page_for(backed, PER_PAGE)
    return page_hint(len(p.base_ids), PER_PAGE)


def _ecosync_row(
    p: _Prepared,
    k: int,
    loss: Loss,
    added: frozenset[int],
    sim: ServedSimulator,
    engine: Engine,
    chain: PositionChain,
) -> RecoveryRow:
    hint = _hint(loss, p, chain)
    with sim.client(p.store) as client:
        result = sync_store(p.store, chain=chain, client=client, engine=engine)
    with engine.connect() as conn:
        new_stored = set(
            conn.execute(
                select(orders_table.c.order_id).where(
                    orders_table.c.store == p.store.identifier,
                    orders_table.c.order_id > p.base_last,
                )
            ).scalars()
        )
    count = store_summary(engine, p.store.identifier).order_count
    base_stored = count - len(new_stored)
    missing = len(added - new_stored) + (len(p.base_ids) - base_stored)
    duplicates = duplicate_count(engine, p.store.identifier)
    err = abs(hint - p.true_page)
    bound = goal_bound(k, err)
    return RecoveryRow(
        store=p.store.identifier,
        k=k,
        loss=loss,
        strategy="ecosync",
        calls=result.api_calls,
        seconds=result.seconds,
        timing="http",
        missing=missing,
        duplicates=duplicates,
        start_page=hint,
        true_page=p.true_page,
        err=err,
        bound=bound,
        within_bound=result.api_calls <= bound and missing == 0 and duplicates == 0,
        source=result.position_source,
    )


def _baseline_row(
    p: _Prepared, k: int, run: BaselineRun, added: frozenset[int], seconds: float, timing: str
) -> RecoveryRow:
    missing = run.missing(added)
    re_read = run.re_read(p.base_ids)
    err = abs(run.start_page - p.true_page)
    bound = goal_bound(k, err)
    return RecoveryRow(
        store=p.store.identifier,
        k=k,
        loss="a,b",
        strategy=run.strategy,
        calls=run.calls,
        seconds=round(seconds, 3),
        timing=timing,
        missing=missing,
        duplicates=re_read,
        start_page=run.start_page,
        true_page=p.true_page,
        err=err,
        bound=bound,
        within_bound=run.calls <= bound and missing == 0,
        recorded_page=run.recorded_page,
    )


def _baseline_rows(
    p: _Prepared, k: int, added: frozenset[int], sim: ServedSimulator, quick: bool
) -> list[RecoveryRow]:
    rows = []
    with sim.client(p.store) as client:
        fetcher = _HistoryFetcher(client, p.history, sim.local, QUICK_REAL_PAGES if quick else None)
        restart = restart_from_page_one(fetcher, PER_PAGE)
        rows.append(_baseline_row(p, k, restart, added, fetcher.total_seconds(), fetcher.timing))
        started = time.perf_counter()
        fixed = old_fix(client, p.base_last, PER_PAGE)
        rows.append(_baseline_row(p, k, fixed, added, time.perf_counter() - started, "http"))
    return rows


@contextmanager
def _chain_for(
    stores: Sequence[Store], engine: Engine, redis_url: str, folder: Path
) -> Iterator[PositionChain]:
    chain = PositionChain(
        stores,
        RedisLayer.from_url(redis_url),
        JsonBackup(folder / "sync-positions" / "sync-positions.json"),
        DatabaseLayer(engine),
    )
    try:
        yield chain
    finally:
        chain.close()


def run_recovery_bench(
    *,
    quick: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    specs: Sequence[StoreSpec] = RECOVERY_STORES,
    redis_url: str | None = None,
    redis_marker: str = BENCH_REDIS_MARKER,
    backend: Backend = "postgresql",
    postgres_admin_url: str | None = None,
    separate_process: bool = True,
    progress: Callable[[str], None] | None = None,
) -> RecoveryReport:
    """Run the recovery benchmark and return its rows (see the module docstring).

    ``redis_url`` must name a database that is empty or claimed with ``redis_marker``
    (it is flushed); the orders database is created for the run and dropped after it.
    """
    say = progress or (lambda message: logger.info("%s", message))
    started = time.perf_counter()
    report = RecoveryReport(rows=[], quick=quick, backend=backend)
    ordered_ks = sorted(set(ks))
    with ExitStack() as stack:
        folder = stack.enter_context(temporary_folder())
        r = stack.enter_context(claimed_redis(redis_url or bench_redis_url(), redis_marker))
        url = stack.enter_context(
            bench_database(backend, folder=folder, admin_url=postgres_admin_url)
        )
        sim = stack.enter_context(served_simulator(specs, separate_process=separate_process))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        migrate(engine)
        stores = [sim.store(s.identifier, per_page=PER_PAGE) for s in specs]
        chain = stack.enter_context(_chain_for(stores, engine, r.url, folder))
        for spec in specs:
            t0 = time.perf_counter()
            prepared = _prepare(sim, engine, chain, spec)
            load = time.perf_counter() - t0
            report.setup_seconds[f"load {spec.identifier}"] = load
            report.stores[spec.identifier] = {
                "orders": len(prepared.base_ids),
                "pages": prepared.true_page,
                "last_id": prepared.base_last,
            }
            say(f"{spec.identifier}: {len(prepared.base_ids):,} orders loaded in {load:.1f} s")
            for k in ordered_ks:
                added: frozenset[int] = frozenset()
                for loss in LOSSES:
                    added = _reset(prepared, k, sim, engine, chain, r)
                    _lose(loss, chain, r)
                    row = _ecosync_row(prepared, k, loss, added, sim, engine, chain)
                    report.rows.append(row)
                    say(
                        f"{spec.identifier} k={k} loss={loss}: ecosync {row.calls} calls, "
                        f"{row.missing} missing"
                    )
                for row in _baseline_rows(prepared, k, added, sim, quick):
                    report.rows.append(row)
                    say(f"{spec.identifier} k={k}: {row.strategy} {row.calls} calls")
    report.seconds = time.perf_counter() - started
    return report
