"""The fault-injection suite's machinery: the stores, the sync driver, the injectors, the audit.

Every fault scenario follows one shape: five small stores (gaps, one with sparse ids far
from 1) are synced round after round while new orders arrive, an injector breaks
something at random moments, and at the end the faults stop, a clean sync runs, and the
orders table is reconciled with the simulator's ids. ``FaultFigures`` is what each
scenario reports; the suite's conftest prints them at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ecosync_pipeline.asgi import free_port
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import store_summaries
from ecosync_pipeline.sync.engine import SyncResult
from ecosync_pipeline_tests.helpers import World, reconcile

FAST_CLIENT: dict[str, float] = {
    "timeout": 0.5,
    "backoff_base": 0.01,
    "default_retry_after": 0.01,
    "retry_after_cap": 0.05,
}
"""Client options that keep retries cheap: a short timeout and waits of milliseconds."""

# Stand-in for the arrival of orders while a sync runs: one new order per this share of
# API requests (the simulator appends it after the last id).
ARRIVAL_RATE = 0.02


@dataclass(frozen=True)
class Scale:
    """How big a fault run is: the stores and how many faults of each kind."""

    name: str
    specs: tuple[StoreSpec, ...]
    flushes: int
    redis_kills: int
    process_kills: int
    truncations: int
    pg_drops: int
    deletion_rounds: int
    api_rounds: int


def _specs(counts: Sequence[int], sparse: int) -> tuple[StoreSpec, ...]:
    natur, dilst, mgstr, jwlr = counts
    return (
        StoreSpec("NATUR", name="Natur", count=natur, gap_rate=0.03, seed=11),
        StoreSpec("DILST", name="Dilst", first_id=1000, count=dilst, gap_rate=0.10, seed=12),
        StoreSpec("MGSTR", name="Mgstr", count=mgstr, gap_rate=0.30, seed=13),
        StoreSpec("JWLR", name="Jwlr", first_id=40, count=jwlr, gap_rate=0.05, seed=14),
        # Sparse ids far from 1: id / per_page says a page thousands of pages too far.
        StoreSpec(
            "PURNA", name="Purna", first_id=500_000, count=sparse, stride=7, gap_rate=0.03, seed=15
        ),
    )


SMALL = Scale(
    name="small",
    specs=_specs((300, 450, 600, 800), 350),
    flushes=50,
    redis_kills=6,
    process_kills=4,
    truncations=12,
    pg_drops=12,
    deletion_rounds=4,
    api_rounds=3,
)
LARGE = Scale(
    name="large",
    specs=_specs((900, 1400, 2000, 2500), 1200),
    flushes=200,
    redis_kills=25,
    process_kills=12,
    truncations=60,
    pg_drops=60,
    deletion_rounds=12,
    api_rounds=8,
)


@dataclass
class FaultFigures:
    """What one fault scenario did and found (one row of the session summary)."""

    fault: str
    injected: int = 0
    mid_sync: int = 0
    syncs: int = 0
    failed_syncs: int = 0
    orders_checked: int = 0
    missing: int = 0
    duplicated: int = 0
    positions_ahead: int = 0
    position_checks: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        """Thread-safe increment of one counter (injectors run in their own threads)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


SUMMARY_COLUMNS = (
    "fault",
    "injected",
    "mid-sync",
    "syncs",
    "failed",
    "orders checked",
    "missing",
    "duplicated",
    "ahead",
    "seconds",
)


def summary_lines(rows: Sequence[FaultFigures]) -> list[str]:
    """The figures as an aligned text table, one line per fault, then the notes."""
    table = [SUMMARY_COLUMNS] + [
        (
            r.fault,
            str(r.injected),
            str(r.mid_sync),
            str(r.syncs),
            str(r.failed_syncs),
            str(r.orders_checked),
            str(r.missing),
            str(r.duplicated),
            f"{r.positions_ahead}/{r.position_checks}",
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        lines.extend(f"  {r.fault}: {note}" for note in r.notes)
    return [line.rstrip() for line in lines]


# --- driving syncs ----------------------------------------------------------------------


class Driver:
    """Runs syncs of a World the way the scheduler would, counting and auditing each one.

    ``allowed`` are the errors a fault may legitimately make a run fail with (the next
    run must then finish the job). Another EcosyncError propagates and fails the test at
    once; a non-ecosync exception (a library's, leaked out of the core) is recorded and
    fails it in audit(), once the orders have still been counted.
    """

    def __init__(
        self,
        world: World,
        figures: FaultFigures,
        *,
        allowed: tuple[type[EcosyncError], ...] = (),
        client_options: dict[str, float] | None = None,
        redis_retry_after: float | None = None,
        seed: int = 0,
    ) -> None:
        self.world = world
        self.figures = figures
        self.allowed = allowed
        self.client_options = dict(FAST_CLIENT if client_options is None else client_options)
        self.redis_retry_after = redis_retry_after
        self.rng = random.Random(seed)
        self.syncing = threading.Event()
        self.errors: list[str] = []
        self.leaked: list[str] = []
        self.added = 0
        """Orders the driver added between runs."""

    @property
    def stores(self) -> list[str]:
        return [s.identifier for s in self.world.stores]

    @contextlib.contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """A fresh Runtime (one scheduler run), with the driver's client options."""
        with self.world.open() as rt:
            rt.client_options.update(self.client_options)
            if self.redis_retry_after is not None:
                rt.chain.redis.retry_after = self.redis_retry_after
            yield rt

    def sync_round(self, *, new_orders: int = 0) -> list[SyncResult]:
        """New orders arrive (up to ``new_orders`` a store), then one run syncs every store."""
        for store in self.stores:
            if new_orders:
                added = self.world.simulator.add_orders(store, self.rng.randint(0, new_orders))
                self.added += len(added)
        results: list[SyncResult] = []
        try:
            with self.runtime() as rt:
                for store in self.stores:
                    result = self.sync_one(rt, store)
                    if result is not None:
                        results.append(result)
                    self.check_positions(rt)
        except self.allowed as exc:  # opening the runtime itself met the fault
            self.figures.add("failed_syncs")
            self.errors.append(f"{type(exc).__name__}: {exc}")
        return results

    def sync_one(self, rt: Runtime, store: str) -> SyncResult | None:
        """One store's sync; None when it failed with an allowed error."""
        self.figures.add("syncs")
        self.syncing.set()
        try:
            return rt.sync(store)
        except self.allowed as exc:
            self.figures.add("failed_syncs")
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return None
        except Exception as exc:
            # Not one of ours: a library exception leaked out of the core. It fails the
            # test in assert_no_leaks(), after the audit has still counted the orders.
            self.figures.add("failed_syncs")
            first_line = (str(exc).splitlines() or [""])[0]
            name = f"{type(exc).__module__}.{type(exc).__name__}"
            self.leaked.append(f"store {store}: {name}: {first_line}")
            return None
        finally:
            self.syncing.clear()

    def check_positions(self, rt: Runtime) -> None:
        """Invariant 2 right now: no Redis or JSON position is ahead of the orders table."""
        try:
            ahead = positions_ahead(rt)
        except self.allowed:
            return  # the fault hit the check itself; the final audit repeats it
        self.figures.add("position_checks")
        self.figures.add("positions_ahead", len(ahead))
        assert not ahead, ahead

    def assert_no_leaks(self) -> None:
        """Every failed run failed with one of our errors (errors.py), never a library's."""
        assert not self.leaked, self.leaked

    def sync_until_clean(self, *, max_rounds: int = 20) -> None:
        """Rounds without new orders until every store's run ends without an error."""
        for _ in range(max_rounds):
            failed_before = self.figures.failed_syncs
            results = self.sync_round()
            if self.figures.failed_syncs == failed_before and all(r.reached_end for r in results):
                return
        raise AssertionError(f"no clean round in {max_rounds}: {self.errors[-5:]}")


def positions_ahead(rt: Runtime) -> list[str]:
    """Every Redis or JSON position whose last order id is beyond the orders table's."""
    ids = [s.identifier for s in rt.stores]
    summaries = store_summaries(rt.engine)
    snapshot = rt.chain.redis.snapshot(ids)
    backup = rt.chain.backup.read_many(rt.stores).positions
    problems = []
    for sid in ids:
        summary = summaries.get(sid)
        db_last = summary.last_order_id if summary is not None else None
        for layer, position in (("redis", snapshot.positions.get(sid)), ("json", backup.get(sid))):
            target = position.target if position is not None else None
            if target is not None and (db_last is None or target > db_last):
                problems.append(f"{sid}: {layer} position at order {target}, database at {db_last}")
    return problems


def audit(driver: Driver) -> None:
    """The faults are over: a clean sync must succeed, then nothing may be lost or doubled.

    Adds the reconciliation to the figures and asserts: every store's final run reaches
    the end, 0 missing, 0 duplicated, no position ahead of the data, and the status
    report finds every store healthy in Redis and in the JSON backup.
    """
    world, figures = driver.world, driver.figures
    world.simulator.clear_faults()
    with driver.runtime() as rt:
        for store in driver.stores:
            result = rt.sync(store)  # no fault now: any error fails the test
            figures.add("syncs")
            assert result.reached_end, result
        for store in driver.stores:
            rec = reconcile(rt, world.simulator, store)
            figures.add("orders_checked", rec.expected)
            figures.add("missing", rec.missing)
            figures.add("duplicated", rec.duplicated)
        ahead = positions_ahead(rt)
        figures.add("position_checks")
        figures.add("positions_ahead", len(ahead))
        report = status_report(rt.chain)
    if driver.leaked:
        figures.notes.append(
            f"{len(driver.leaked)} runs leaked a non-ecosync exception, first: {driver.leaked[0]}"
        )
    assert (figures.missing, figures.duplicated) == (0, 0), figures
    assert not ahead, ahead
    unhealthy = [
        (s.store, s.status, s.json_status)
        for s in report.stores
        if s.status != "healthy" or s.json_status != "healthy"
    ]
    assert not unhealthy, unhealthy
    driver.assert_no_leaks()


# --- injectors --------------------------------------------------------------------------


class Injector(threading.Thread):
    """Calls ``action`` at random moments until it has injected ``count`` faults.

    ``action`` returns whether it injected one (a fault that found nothing to break does
    not count). With ``syncing`` (the driver's event), each fault lands ``gap`` after a
    store's sync starts, one a sync; the figures count how many landed during it.
    """

    def __init__(
        self,
        name: str,
        action: Callable[[], bool],
        count: int,
        figures: FaultFigures,
        *,
        gap: tuple[float, float],
        syncing: threading.Event | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(name=f"inject-{name}", daemon=True)
        self.action = action
        self.count = count
        self.figures = figures
        self.gap = gap
        self.syncing = syncing
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.done < self.count and self._sync_started():
                if self.stop.wait(self.rng.uniform(*self.gap)):
                    return
                during = self.syncing is not None and self.syncing.is_set()
                if self.action():
                    self.done += 1
                    self.figures.add("injected")
                    if during:
                        self.figures.add("mid_sync")
                self._sync_ended()
        except BaseException as exc:  # reported by finish(), in the test's thread
            self.error = exc

    # With ``syncing``, one fault a store's sync, ``gap`` after it starts: spread over
    # the runs however slow the machine, never all spent while a run opens.
    def _sync_started(self) -> bool:
        return self.syncing is None or self._until(self.syncing.is_set)

    def _sync_ended(self) -> None:
        if self.syncing is not None:
            syncing = self.syncing
            self._until(lambda: not syncing.is_set())

    def _until(self, condition: Callable[[], bool]) -> bool:
        """Poll ``condition`` until it holds (True) or the injector is stopped (False)."""
        while not condition():
            if self.stop.wait(0.002):
                return False
        return True

    @property
    def finished(self) -> bool:
        return self.done >= self.count or not self.is_alive()

    def finish(self) -> None:
        """Stop injecting and re-raise whatever broke the injector itself."""
        self.stop.set()
        self.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error


def injector_for(
    driver: Driver,
    name: str,
    action: Callable[[], bool],
    count: int,
    *,
    gap: tuple[float, float],
    seed: int,
) -> Injector:
    """An Injector that strikes during the driver's syncs and counts in the driver's figures,
    as every scenario's injector does."""
    return Injector(name, action, count, driver.figures, gap=gap, syncing=driver.syncing, seed=seed)


def sync_under(
    injector: Injector,
    driver: Driver,
    *,
    min_rounds: int = 2,
    more: Callable[[], bool] = lambda: False,
    after_round: Callable[[], None] = lambda: None,
) -> Counter[str]:
    """Sync rounds (25 new orders a store each) while ``injector`` strikes; then stop it.

    The rounds go on until the injector has struck its count, at least ``min_rounds``
    times, and while ``more()`` says so; ``after_round`` runs after each. Returns where
    the runs' positions came from (redis, json, database), so a test can tell a fallback
    was exercised.
    """
    sources: Counter[str] = Counter()
    injector.start()
    try:
        rounds = 0
        while not injector.finished or rounds < min_rounds or more():
            sources.update(r.position_source for r in driver.sync_round(new_orders=25))
            rounds += 1
            after_round()
    finally:
        injector.finish()
    return sources


class RedisProcess:
    """A redis-server of our own (no persistence) that a test may kill and restart."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        """Start the server on our port and wait until it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The log of every start is kept in workdir for a failed test's post-mortem.
        log = self.workdir / f"redis-{self.restarts}.log"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            f"redis-server did not start on port {self.port}; see {log}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to save or close anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port (empty: nothing was persisted)."""
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        """Kill our server for good (only ever the process this object started)."""
        self.kill()
        self.process = None


def flush_action(client: redis.Redis, marker: str) -> Callable[[], bool]:
    """FLUSHDB on the test's own database, keeping the marker that claims it for tests."""

    def flush() -> bool:
        pipe = client.pipeline(transaction=True)
        pipe.flushdb()
        pipe.set(marker, "1")
        pipe.execute()
        return True

    return flush


@contextlib.contextmanager
def redis_flusher(redis_url: str, marker: str) -> Iterator[Callable[[], bool]]:
    """flush_action on an admin connection of its own, closed on leaving, so a scenario's
    flushes never share the sync's connections."""
    admin = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        yield flush_action(admin, marker)
    finally:
        admin.close()


def truncate_action(path: Path, rng: random.Random) -> Callable[[], bool]:
    """Cut the backup file short (or fill its start with garbage), in place."""

    def truncate() -> bool:
        try:
            size = path.stat().st_size
            if size < 2:
                return False
            if rng.random() < 0.8:
                os.truncate(path, rng.randrange(0, size - 1))
            else:
                with path.open("r+b") as handle:
                    handle.write(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
        except FileNotFoundError:  # moved aside or being replaced right now
            return False
        return True

    return truncate


def quarantined(backup_path: Path) -> list[Path]:
    """The backup files the JSON layer moved aside."""
    return sorted(backup_path.parent.glob(f"{backup_path.name}.corrupt-*"))


def sync_command(
    env: dict[str, str], log: Path, stores: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``ecosync sync`` (all stores, or ``stores``) as a separate process logging to ``log``."""
    # The console script next to this interpreter: the same environment as the tests.
    args = [str(Path(sys.executable).parent / "ecosync"), "sync"]
    for store in stores:
        args += ["--store", store]
    handle = log.open("ab")
    try:
        # From the log's folder: a .env in the project root (the demo's) must not leak in.
        return subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent
        )
    finally:
        handle.close()
