"""`ecosync bench soak`: everything at once, then the table compared with EcoManager id by id.

For each seed, on a world of its own (soak_world.py): the simulator's stores move
(arrivals, deletions, swaps, status changes, some orders too large for the receiver,
100 ms on every answer), their webhooks are delivered to the real receiver with drops,
duplicates, reordering and delays, while the receiver is SIGKILLed and restarted, Redis
is flushed, the positions are lost (Redis and the JSON backup), the orders database's
connections are terminated and the running sync is SIGKILLed, and ``ecosync sync``,
``ecosync reconcile`` and ``ecosync refresh-statuses`` run as processes of their own,
each on its own schedule, all at once (soak_churn.py). Then the churn stops, the
deliveries drain, and the soak judges (soak_audit.py):

1. every delivery the receiver answered 2xx: in the inbox, applied, and shown by the
   table, then and all along (soak_watch.py looked every 2 s for one undone);
2. the table against the simulator once drained and after one final ``ecosync sync``,
   for the record (``strict`` also fails on an order the final sync left missing);
3. after one full ``ecosync reconcile`` sweep per store: the table against the
   simulator, the verdict. Missing, duplicated, states differing, deletions not flagged,
   flagged wrongly and acknowledged deliveries not applied must all be 0.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import StoreId, validate_store_identifier
from ecosync_pipeline.lab.bench.resources import (
    BENCH_REDIS_MARKER,
    bench_redis_url,
    claimed_redis,
)
from ecosync_pipeline.lab.bench.soak_audit import Counts, Evidence, audit_deliveries, audit_store
from ecosync_pipeline.lab.bench.soak_churn import Chaos, CommandLoop, CommandRun, Shop
from ecosync_pipeline.lab.bench.soak_report import STAGES, SeedResult, SoakReport, StoreResult
from ecosync_pipeline.lab.bench.soak_watch import Watcher
from ecosync_pipeline.lab.bench.soak_world import SoakWorld, soak_stores, soak_world
from ecosync_pipeline.storage import make_engine
from ecosync_pipeline.storage.schema import webhook_inbox
from ecosync_pipeline.storage.store_state import read_state

Progress = Callable[[str], None]
RETRY_SCHEDULE_SECONDS = 85_932.0
"""EcoManager's six retries at 22 s x 5^k: the last about 24 hours after the first."""
SWEEP_RUNS = 6


@dataclass(frozen=True)
class SoakPlan:
    """How much of everything: sizes, schedules (seconds between runs) and the faults."""

    minutes: float = 10.0
    stores: int = 4
    orders: int = 2_000
    sync_every: float = 3.0
    reconcile_every: float = 30.0
    reconcile_max_calls: int = 6
    refresh_every: float = 20.0
    """The repairs run less often than the sync, as in production (a sync every 15
    minutes, the status refresh hourly, the sweep nightly): what the sync alone leaves
    wrong stays long enough to be seen after the final sync."""
    chaos_every: float = 6.0
    command_timeout: float = 240.0
    arrival_rate: float = 0.1
    deletion_rate: float = 0.02
    swap_rate: float = 0.03
    status_flow_rate: float = 0.01
    """Share of the open orders moving on each simulated minute (a real second here)."""
    large_order_rate: float = 0.03
    latency_ms: float = 100.0
    """Each answer leaves the server this long after its page was read: a page can be
    older than a webhook applied meanwhile, as over a real network."""
    drop_rate: float = 0.05
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.2
    delay_rate: float = 0.05

    def switches(self) -> dict[str, float]:
        """The simulator's churn switches (soak_churn.Shop turns them on)."""
        return {
            "arrival_rate": self.arrival_rate,
            "deletion_rate": self.deletion_rate,
            "swap_rate": self.swap_rate,
            "status_flow_rate": self.status_flow_rate,
            "time_scale": 60.0,
            "large_order_rate": self.large_order_rate,
            "latency_ms": self.latency_ms,
        }

    @property
    def churn_seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def retry_seconds(self) -> float:
        """EcoManager's day of retries, shrunk to a third of the churn (10 s to 120 s):
        a receiver down a few seconds is caught up, a delivery refused for good gives up."""
        return min(120.0, max(10.0, self.churn_seconds / 3))


def _deliveries(world: SoakWorld, plan: SoakPlan) -> None:
    dispatcher = world.simulator.webhooks.dispatcher
    dispatcher.policy = dispatcher.policy.updated(
        time_scale=plan.retry_seconds / RETRY_SCHEDULE_SECONDS,
        drop_rate=plan.drop_rate,
        duplicate_rate=plan.duplicate_rate,
        reorder_rate=plan.reorder_rate,
        reorder_window=2.0,
        delay_rate=plan.delay_rate,
        delay_seconds=3.0,
    )


def _loops(world: SoakWorld, plan: SoakPlan, rng: random.Random) -> dict[str, CommandLoop]:
    def loop(kind: str, args: list[str], every: float) -> CommandLoop:
        return CommandLoop(
            kind,
            args,
            world.env,
            interval=every,
            timeout=plan.command_timeout,
            rng=random.Random(rng.random()),
        )

    workers = str(min(len(world.stores), 7))
    return {
        "sync": loop(
            "sync", ["sync", "--workers", workers, "--budget-seconds", "60"], plan.sync_every
        ),
        "reconcile": loop(
            "reconcile",
            ["reconcile", "--max-calls", str(plan.reconcile_max_calls)],
            plan.reconcile_every,
        ),
        "refresh-statuses": loop("refresh-statuses", ["refresh-statuses"], plan.refresh_every),
    }


def _churn(
    world: SoakWorld, plan: SoakPlan, rng: random.Random, result: SeedResult, progress: Progress
) -> None:
    """Everything at once for the plan's minutes, then everything stopped."""
    loops = _loops(world, plan, rng)
    shop = Shop(world, random.Random(rng.random()), plan.switches())
    chaos = Chaos(world, random.Random(rng.random()), loops["sync"], plan.chaos_every)
    shop.start()
    for loop in loops.values():
        loop.start()
    chaos.start()
    started = time.monotonic()
    try:
        while (left := plan.churn_seconds - (time.monotonic() - started)) > 0:
            time.sleep(min(30.0, left))
            runs = sum(len(loop.runs) for loop in loops.values())
            progress(
                f"  {time.monotonic() - started:.0f} s: {dict(shop.changes)}, {runs} commands, "
                f"faults {dict(chaos.counts)}"
            )
    finally:
        shop.stop()
        chaos.stop()
        for loop in loops.values():
            loop.stop()
    result.changes = dict(shop.changes)
    result.chaos = dict(chaos.counts)
    result.problems += chaos.problems
    for loop in loops.values():
        result.runs += loop.runs


def _pending(engine: Engine) -> int:
    stmt = select(func.count()).where(webhook_inbox.c.applied_at.is_(None))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _drain(world: SoakWorld, engine: Engine, plan: SoakPlan, result: SeedResult) -> None:
    """Wait for every queued delivery and retry, then for the receiver to apply the inbox."""
    dispatcher = world.simulator.webhooks.dispatcher
    if not dispatcher.wait_idle(plan.retry_seconds + 60):
        result.problems.append(f"{dispatcher.pending()} deliveries still queued after the drain")
    deadline = time.monotonic() + 60
    while (pending := _pending(engine)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if pending:
        result.problems.append(f"{pending} inbox deliveries never applied by the receiver")


def _audit(world: SoakWorld, engine: Engine, evidence: Evidence) -> dict[str, Counts]:
    return {
        s.identifier: audit_store(engine, world.simulator, s.identifier, evidence)[0]
        for s in world.stores
    }


def _command(world: SoakWorld, plan: SoakPlan, kind: str, *args: str) -> CommandRun:
    """One ecosync command, run once and waited for."""
    runner = CommandLoop(
        kind, args, world.env, interval=0, timeout=plan.command_timeout, rng=random.Random(0)
    )
    return runner.run_once()


def _sweep(world: SoakWorld, engine: Engine, plan: SoakPlan, result: SeedResult) -> None:
    """Reconcile until every store has done one whole sweep that started after the sync."""
    needed = {s.identifier: _next_sweep(engine, s.identifier) for s in world.stores}
    for _ in range(SWEEP_RUNS):
        if not needed:
            return
        stores = [a for store in needed for a in ("--store", store)]
        run = _command(world, plan, "final reconcile", "reconcile", "--json", *stores)
        result.runs.append(run)
        for line in _json_list(run.output):
            store = validate_store_identifier(line.get("store"))
            if line.get("sweep_complete") and int(line.get("sweep", 0)) >= needed.get(store, 0):
                needed.pop(store, None)
    if needed:
        result.problems.append(
            f"no complete sweep after {SWEEP_RUNS} reconcile runs: {sorted(needed)}"
        )


def _judge(
    world: SoakWorld, engine: Engine, plan: SoakPlan, result: SeedResult, watcher: Watcher
) -> None:
    """The deliveries, then the table at each stage: drained, synced once more, swept."""
    evidence = {stage: Evidence() for stage in STAGES}
    names = [s.identifier for s in world.stores]
    # Judged once the deliveries drained, before anything else writes; part of the verdict.
    unapplied, result.deliveries = audit_deliveries(
        engine, world.simulator, names, evidence["swept"], watcher.undone
    )
    result.watched = {
        "looks": watcher.looks,
        "failed looks": watcher.failed_looks,
        "deliveries undone": len(watcher.undone),
    }
    audits = {"drained": _audit(world, engine, evidence["drained"])}
    workers = str(min(len(world.stores), 7))
    result.runs.append(
        _command(world, plan, "final sync", "sync", "--workers", workers, "--budget-seconds", "0")
    )
    audits["synced"] = _audit(world, engine, evidence["synced"])
    _sweep(world, engine, plan, result)
    audits["swept"] = _audit(world, engine, evidence["swept"])
    for store in world.stores:
        sid = store.identifier
        stages = {stage: audits[stage][sid] for stage in STAGES}
        for counts in stages.values():
            counts.acknowledged_not_applied = unapplied.get(sid, 0)
        result.stores.append(
            StoreResult(
                store=sid,
                mode=store.read_mode,
                orders=world.simulator.count(sid),
                calls=world.simulator.stats(sid)["total"],
                stages=stages,
            )
        )
    result.evidence = {stage: e.items for stage, e in evidence.items()}


def _next_sweep(engine: Engine, store: StoreId) -> int:
    """The number the next sweep of the store will carry (one in progress is finished first)."""
    state = read_state(engine, store, "reconcile") or {}
    return int(state.get("sweep", 0)) + 1


def _json_list(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Services:
    """Where the soak's Redis database (claimed with ``redis_marker``) and PostgreSQL are."""

    redis_url: str
    redis_marker: str = BENCH_REDIS_MARKER
    postgres_admin_url: str | None = None


def run_seed(seed: int, plan: SoakPlan, services: Services, progress: Progress) -> SeedResult:
    """One seed: its world, the churn, the drain, the final sync and sweep, the verdict."""
    started = time.monotonic()
    result = SeedResult(seed=seed, minutes=plan.minutes, seconds=0.0)
    specs = soak_stores(seed, plan.orders, plan.stores)
    rng = random.Random(seed)
    with (
        claimed_redis(services.redis_url, services.redis_marker) as redis,
        soak_world(seed, specs, redis, services.postgres_admin_url) as world,
    ):
        _deliveries(world, plan)
        shown = ", ".join(f"{s.spec.identifier} ({s.read_mode})" for s in specs)
        progress(f"seed {seed}: {shown}, churn for {plan.minutes:g} min")
        watcher = Watcher(world.database_url).start()
        _churn(world, plan, rng, result, progress)
        engine = make_engine(world.database_url)
        try:
            progress(f"seed {seed}: churn stopped; draining the deliveries")
            _drain(world, engine, plan, result)
            watcher.stop()
            watcher.look(engine, time.monotonic() - started)
            progress(f"seed {seed}: the final sync and sweep")
            _judge(world, engine, plan, result, watcher)
        finally:
            engine.dispose()
    result.seconds = time.monotonic() - started
    progress(f"seed {seed}: {result.final.as_dict()} in {result.seconds:.0f} s")
    return result


def run_soak(
    *,
    minutes: float = 10.0,
    seeds: int = 3,
    plan: SoakPlan | None = None,
    redis_url: str | None = None,
    redis_marker: str = BENCH_REDIS_MARKER,
    postgres_admin_url: str | None = None,
    strict: bool = False,
    progress: Progress = lambda _: None,
) -> SoakReport:
    """Seeds 1..``seeds``, each ``minutes`` of churn; see the module docstring."""
    chosen = plan or SoakPlan(minutes=minutes)
    services = Services(redis_url or bench_redis_url(), redis_marker, postgres_admin_url)
    report = SoakReport(plan=asdict(chosen) | {"seeds": seeds}, strict=strict)
    for seed in range(1, seeds + 1):
        report.seeds.append(run_seed(seed, chosen, services, progress))
    return report
