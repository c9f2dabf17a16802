"""``ecosync bench frontier``: the frontier and resumable cursor reads, in figures.

1. The webhook gap, in page mode and in cursor mode: 200 orders synced, 60 new ones
   upstream, only the newest one's OrderCreated applied; the orders missing after the
   next sync (no reconcile).
2. A NATUR-sized first import in cursor mode (181,601 orders, 1,817 pages of 100) under
   the default windows (4/s, 40/min, 800/h, 8,000/day), as the schedule runs it: a sync
   every 15 minutes, each stopping after 10 minutes (``--budget-seconds 600``) or when
   the budget would make it wait more than 5. Windows, schedule and time budget are
   shortened alike by the time scale (the simulator runs in a process of its own). The
   second run is an ``ecosync sync`` process SIGKILLed mid-read: the pages it fetched
   and never committed are the pages read again. Runs, calls and orders missing.
3. An early null ``next_cursor``: a server whose cursor ends after page 1 of a first
   import of 1,000 orders; the read is refused, the frontier stays, the check says.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Settings, Store, StoreId, validate_store_identifier
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ContractViolation
from ecosync_pipeline.lab.bench.report import machine
from ecosync_pipeline.lab.bench.resources import claimed_redis, temporary_folder, temporary_postgres
from ecosync_pipeline.lab.bench.simserver import rewriting_body, served_simulator
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec, demo_token
from ecosync_pipeline.lab.simulator.app import create_app
from ecosync_pipeline.ratebudget import RateBudget
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import iter_order_ids
from ecosync_pipeline.storage.ranges import deleted_ids
from ecosync_pipeline.storage.store_state import read_cursor_read, read_frontier
from ecosync_pipeline.tables import format_table
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.inbox import Delivery, store_delivery

Progress = Callable[[str], None]
NATUR_LAST_ID = 181_601
SCHEDULE_SECONDS, RUN_SECONDS, MAX_WAIT_SECONDS = 900.0, 600.0, 300.0
"""The sync schedule (every 15 minutes), `ecosync sync`'s time budget, the budget's wait."""
KILLED_RUN = 2
GAP_STORES = {
    "pages": validate_store_identifier("GAPP"),
    "cursor": validate_store_identifier("GAPC"),
}
EARLY = validate_store_identifier("EARLY")
NATUR = validate_store_identifier("NATUR")
SMALL_SPECS = [
    *(StoreSpec(s, first_id=1, count=200, gap_rate=0.0, seed=5) for s in GAP_STORES.values()),
    StoreSpec(EARLY, first_id=1, count=1000, gap_rate=0.0, seed=6),
]


@dataclass(frozen=True)
class Row:
    """One scenario's figures."""

    scenario: str
    mode: str
    runs: int
    calls: int
    missing: int
    result: str


@dataclass
class FrontierReport:
    """What ``ecosync bench frontier`` measured."""

    time_scale: float
    rows: list[Row] = field(default_factory=list)
    import_figures: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [
            (r.scenario, r.mode, str(r.runs), f"{r.calls:,}", f"{r.missing:,}", r.result)
            for r in self.rows
        ]
        columns = ("scenario", "mode", "runs", "calls", "missing", "result")
        return "\n".join(
            [
                format_table(columns, rows),
                "",
                f"time scale {self.time_scale:g}: a scaled hour lasts "
                f"{3600 / self.time_scale:.0f} s; the windows are the default 4/s, 40/min, "
                "800/h, 8,000/day",
            ]
        )


def _ended(body: bytes) -> bytes:
    """The page's answer with no next cursor and no next link: the cursor ends here."""
    payload = json.loads(body)
    payload.get("meta", {})["next_cursor"] = None
    payload.get("links", {})["next"] = None
    return json.dumps(payload).encode()


class EarlyEnd:
    """An ASGI wrapper of the simulator: for the stores in ``stores``, the newest-first
    cursor ends (``next_cursor`` null, no ``links.next``) after its first page."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.stores: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        store = str(scope.get("path", "")).lstrip("/").split("/", 1)[0]
        first_newest = "sort_direction" in query and "cursor" not in query
        if scope.get("type") != "http" or store not in self.stores or not first_newest:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, rewriting_body(send, _ended))


def run_frontier_bench(
    *,
    orders: int = NATUR_LAST_ID,
    time_scale: float = 30.0,
    redis_url: str,
    progress: Progress,
) -> FrontierReport:
    """The three scenarios (see the module docstring), on databases of their own."""
    report = FrontierReport(time_scale=time_scale)
    with (
        claimed_redis(redis_url) as redis,
        temporary_postgres() as database_url,
        temporary_folder() as folder,
    ):
        redis.flush()
        settings = Settings(
            database_url=database_url,
            redis_url=redis.url,
            stores_file=str(folder / "stores.yaml"),
            backup_path=str(folder / "sync-positions.json"),
        )
        with _small_world(settings) as (rt, simulator, early):
            for mode in ("pages", "cursor"):
                report.rows.append(_webhook_gap(rt, simulator, GAP_STORES[mode], mode))
                progress(f"webhook gap, {mode}: {report.rows[-1].missing} missing")
            report.rows.append(_early_null(rt, simulator, early))
            progress(f"early null next_cursor: {report.rows[-1].result}")
        row, figures = _natur_import(settings, folder, orders, time_scale, progress)
        report.rows.append(row)
        report.import_figures = figures
    return report


@contextmanager
def _small_world(settings: Settings) -> Iterator[tuple[Runtime, Simulator, EarlyEnd]]:
    """The small stores on a simulator served in this process, behind EarlyEnd."""
    environ = {spec.token_env: demo_token(spec.identifier) for spec in SMALL_SPECS}
    os.environ.update(environ)
    simulator = Simulator(SMALL_SPECS, environ=environ)
    early = EarlyEnd(create_app(simulator))
    with ThreadedServer(early) as server:
        stores = [
            Store(
                identifier=validate_store_identifier(spec.identifier),
                name=spec.name,
                base_url=f"{server.url}/{spec.identifier}",
                token_env=spec.token_env,
                per_page=20,
                import_per_page=100,
                requests_per_second=10_000.0,
                read_mode="pages" if spec.identifier == GAP_STORES["pages"] else "cursor",
            )
            for spec in SMALL_SPECS
        ]
        rt = Runtime.from_settings(settings, stores=stores)
        try:
            yield rt, simulator, early
        finally:
            rt.close()


def _missing(rt: Runtime, ids: set[int], store: StoreId) -> int:
    live = set(iter_order_ids(rt.engine, store)) - set(deleted_ids(rt.engine, store))
    return len(ids - live)


def _webhook_gap(rt: Runtime, simulator: Simulator, store: StoreId, mode: str) -> Row:
    """200 synced, 60 new, only the newest one's OrderCreated applied, then one sync."""
    rt.sync(store)
    new = simulator.add_orders(store, 60)
    body = json.dumps({"data": simulator.order(store, new[-1])}).encode()
    at = datetime.now(timezone.utc)
    store_delivery(rt.engine, Delivery(store, "OrderCreated", "1", new[-1], body, at))
    gaps = apply_pending(rt.engine, {store: store}).gaps.get(store, [])
    before = read_frontier(rt.engine, store)
    result = rt.sync(store)
    after = read_frontier(rt.engine, store)
    return Row(
        f"webhook gap: 60 new ({new[0]}..{new[-1]}), only {new[-1]} delivered; next sync",
        mode,
        1,
        result.api_calls,
        _missing(rt, set(simulator.ids(store)), store),
        f"gap marked for {gaps}; frontier {before} -> {after}",
    )


def _early_null(rt: Runtime, simulator: Simulator, early: EarlyEnd) -> Row:
    """A first import whose cursor ends after page 1: refused, nothing claimed complete."""
    from ecosync_pipeline.defs.orders.checks import completeness_evaluation
    from ecosync_pipeline.storage import store_summary
    from ecosync_pipeline.storage.ranges import live_count_below
    from ecosync_pipeline.sync.batch import audit_last_window, count_served

    early.stores.add(EARLY)
    simulator.reset_counts(EARLY)
    try:
        rt.sync(EARLY)
        refused = "accepted"
    except ContractViolation as exc:
        refused = f"refused ({type(exc).__name__})"
    calls = simulator.request_count(EARLY)
    frontier = read_frontier(rt.engine, EARLY)
    claimed = 0 if frontier is None else live_count_below(rt.engine, EARLY, frontier + 1)
    summary = store_summary(rt.engine, EARLY)
    check = completeness_evaluation(
        summary, count_served(rt, summary), audit_last_window(rt, summary)
    )
    verdict = "passed" if check.passed else check.severity.value
    return Row(
        "early null next_cursor after page 1 of a first import (1,000 orders)",
        "cursor",
        1,
        calls,
        _missing(rt, set(simulator.ids(EARLY)), EARLY),
        f"{refused}; {summary.order_count} rows stored, {claimed} claimed complete "
        f"(frontier {frontier}); check {verdict}",
    )


def _natur_import(
    settings: Settings, folder: Path, orders: int, scale: float, progress: Progress
) -> tuple[Row, dict[str, Any]]:
    """The NATUR-sized first import, run after run on the scaled schedule."""
    spec = StoreSpec("NATUR", name="Natura Bio", first_id=1, last_id=orders, gap_rate=0.0)
    budget = RateBudget(time_scale=scale)
    with served_simulator([spec]) as sim:
        store = replace(sim.store("NATUR"), read_mode="cursor", rate_budget=budget)
        assert store.token_env is not None  # the simulator's stores name their variable
        os.environ[store.token_env] = sim.token(NATUR)
        _stores_file(Path(settings.stores_file), store)
        rt = Runtime.from_settings(settings, stores=[store])
        figures: dict[str, Any] = {"runs": []}
        started = time.monotonic()
        try:
            for run in range(1, 500):
                began = time.monotonic()
                if run == KILLED_RUN:
                    figures["killed"] = _killed_run(rt, sim.control, settings, scale)
                    calls, done = figures["killed"]["requests"], False
                else:
                    calls, done = _scheduled_run(rt, store, settings.redis_url, scale)
                figures["runs"].append(calls)
                progress(f"NATUR import, run {run}: {calls} calls")
                if done:
                    break
                time.sleep(max(0.0, began + SCHEDULE_SECONDS / scale - time.monotonic()))
            ids = set(sim.local.ids("NATUR"))
            missing = _missing(rt, ids, NATUR)
            frontier = read_frontier(rt.engine, NATUR)
        finally:
            rt.close()
    hours = (time.monotonic() - started) * scale / 3600
    calls = sum(figures["runs"])
    # Every page once, and the call confirming the store's lowest id at the end.
    needed = math.ceil(len(ids) / 100) + 1
    figures.update(orders=len(ids), seconds=round(time.monotonic() - started, 1))
    figures.update(scaled_hours=round(hours, 2), frontier=frontier, calls_needed=needed)
    killed = figures.get("killed", {})
    row = Row(
        f"NATUR-sized first import ({len(ids):,} orders), a sync every 15 min, 10 min each",
        "cursor",
        len(figures["runs"]),
        calls,
        missing,
        f"done in {hours:.1f} scaled hours; run {KILLED_RUN} SIGKILLed after committing "
        f"{killed.get('committed')} pages, {killed.get('fetched_not_committed')} fetched "
        f"and not committed (read again); {calls - needed} calls beyond the {needed:,} "
        f"pages and confirmation (re-reads, the last run's newest page); frontier {frontier}",
    )
    return row, figures


def _stores_file(path: Path, store: Store) -> None:
    """The stores file the killed `ecosync sync` process reads (the same scaled budget)."""
    budget = store.rate_budget
    assert budget is not None
    path.write_text(
        "stores:\n"
        f"  - identifier: {store.identifier}\n"
        f"    name: {store.name}\n"
        f"    base_url: {store.base_url}\n"
        f"    token_env: {store.token_env}\n"
        "    read_mode: cursor\n"
        f"    rate_budget: {{time_scale: {budget.time_scale}}}\n",
        encoding="utf-8",
    )


def _scheduled_run(rt: Runtime, store: Store, redis_url: str, scale: float) -> tuple[int, bool]:
    """One scheduled sync: its calls, and whether the import is done."""
    assert store.rate_budget is not None
    limiter = SharedBudget(
        store.identifier, store.rate_budget, redis_url, max_wait=MAX_WAIT_SECONDS / scale
    )
    with EcoManagerClient.from_store(store, rate_limiter=limiter) as client:
        result = rt.sync(store.identifier, budget_seconds=RUN_SECONDS / scale, client=client)
    limiter.close()
    return result.api_calls, result.reached_end


def _killed_run(rt: Runtime, control: Any, settings: Settings, scale: float) -> dict[str, int]:
    """`ecosync sync` in a process of its own, SIGKILLed mid-read: the calls it made, the
    pages it committed, and the pages it fetched and never committed."""
    before = read_cursor_read(rt.engine, NATUR)
    pages_before = before.pages if before is not None else 0
    requests_before = int(control.describe("NATUR")["requests"]["total"])
    env = {
        **os.environ,
        "ECOSYNC_DATABASE_URL": settings.database_url,
        "ECOSYNC_REDIS_URL": settings.redis_url,
        "ECOSYNC_STORES_FILE": settings.stores_file,
        "ECOSYNC_BACKUP_PATH": settings.backup_path,
    }
    command = [str(Path(sys.executable).parent / "ecosync"), "sync", "--store", "NATUR"]
    command += ["--budget-seconds", str(RUN_SECONDS / scale)]
    log = Path(settings.stores_file).parent / "killed-run.log"
    with log.open("ab") as handle:
        # From the log's folder: `ecosync` reads ./.env, and the project root's is the demo's.
        process = subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent
        )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            now = read_cursor_read(rt.engine, NATUR)
            if now is not None and now.pages >= pages_before + 50:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    time.sleep(0.5)  # a request in flight at the kill is still answered (and counted)
    after = read_cursor_read(rt.engine, NATUR)
    committed = (after.pages if after is not None else 0) - pages_before
    requests = int(control.describe("NATUR")["requests"]["total"]) - requests_before
    return {
        "requests": requests,
        "committed": committed,
        "fetched_not_committed": requests - committed,
        "exit_status": int(process.returncode),
    }
