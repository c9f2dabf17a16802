"""`ecosync demo`: the seed's scenario, played end to end through Dagster.

Sync every demo store (a time-budgeted first import, then a catch-up), add new orders,
clear the demo's own Redis database (the seed's ``redis-cli FLUSHALL``, made safe), let
the cache-loss sensor tick launch the recovery job, sync again, and check every order
against the simulator. The runs land in the Dagster instance under data/, so
``dagster dev`` shows them afterwards.

Everything the demo touches is its own: the simulator it starts, files under
data/demo/, and one Redis database number that must hold nothing but ecosync's keys.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
import yaml
from dagster import DagsterInstance, Definitions, SensorResult, SkipReason, build_sensor_context

from ecosync_pipeline.asgi import free_port
from ecosync_pipeline.config import Settings, Store, load_stores
from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import LOSS_EVENT_TAG, REDIS_STATE_TAG
from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.lab.bench.baselines import OLD_PER_PAGE
from ecosync_pipeline.lab.bench.recovery import goal_bound
from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer, StoreSpec
from ecosync_pipeline.runtime import Runtime, build_backup
from ecosync_pipeline.storage import duplicate_count, iter_order_ids

logger = logging.getLogger(__name__)

DEMO_REDIS_URL = "redis://127.0.0.1:6379/8"
OWN_KEY_PREFIXES = ("ecomanager:pageinfo:", "ecosync:")
ENV_MARKER = "# written by `ecosync demo`"
NEW_ORDERS = {"NATUR": 15, "JWLR": 400, "DILST": 57, "MGSTR": 120, "PURNA": 33}
SMALL_DIVISOR = 40
# The demo prints its own story; each run's full log stays in the instance (dagster dev).
RUN_LOGS: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class StoreRow:
    """One line of the demo's final table."""

    store: str
    orders: int = 0
    page_before: int | None = None
    last_id_before: int | None = None
    sensor_saw: str = ""
    restored_from: str = ""
    resume_calls: int = 0
    bound: int = 0
    new_orders: int = 0
    new_synced: int = 0
    missing: int = 0
    duplicated: int = 0
    old_calls: int = 0


@dataclass
class DemoReport:
    """What the demo did, for the table and for the test that plays it small."""

    rows: list[StoreRow] = field(default_factory=list)
    redis_available: bool = True
    sensor_message: str = ""
    recovery_run_id: str | None = None
    runs: int = 0
    seconds: float = 0.0


def _scaled(spec: StoreSpec, divisor: int) -> StoreSpec:
    if divisor == 1:
        return spec
    if spec.count is not None:
        return replace(spec, count=max(50, spec.count // divisor))
    assert spec.last_id is not None
    span = spec.last_id - spec.first_id
    return replace(spec, last_id=spec.first_id + max(50 * spec.stride, span // divisor))


def write_stores_file(path: Path, stores: list[Store], simulator: Simulator, url: str) -> None:
    """The demo's stores file: each store as ``simulator`` serves it now, added orders too.

    ``ecosync simulator serve --stores-file`` on it serves the same ids again, so a sync
    against the re-served stores finds nothing deleted and nothing new.
    """
    entries = []
    for store in stores:
        spec = replace(simulator.spec(store.identifier), added=simulator.added(store.identifier))
        entries.append(
            {
                "identifier": store.identifier,
                "name": store.name,
                "base_url": f"{url}/{store.identifier}",
                "token_env": store.token_env,
                "per_page": store.per_page,
                "import_per_page": store.import_per_page,
                # The simulator is local: the 4/s meant for EcoManager would only slow the demo.
                "requests_per_second": 500,
                "simulator": spec.simulator_keys(),
            }
        )
    path.write_text(
        "# The demo's stores as the demo left them (new orders included), served on "
        f"{url}:\n# `ecosync simulator serve --stores-file {path.name} --port "
        f"{url.rsplit(':', 1)[-1]}` serves them again.\n"
        + yaml.safe_dump({"stores": entries}, sort_keys=False),
        encoding="utf-8",
    )


def _check_own_redis(url: str) -> bool:
    """True if Redis answers and the database holds only ecosync's keys; False if down."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        for key in client.scan_iter(count=1000):
            name = key.decode(errors="replace")
            if not name.startswith(OWN_KEY_PREFIXES):
                raise ConfigError(
                    f"Redis database {url} holds keys ecosync did not write (e.g. {name!r}); "
                    "the demo clears the database it uses. Pass --redis-url with an unused "
                    "database number, e.g. redis://127.0.0.1:6379/9"
                )
        return True
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _flush_own_redis(url: str) -> None:
    """FLUSHDB on the demo's database, after checking again that it holds only our keys."""
    if _check_own_redis(url):
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def _write_env_file(root: Path, settings: Settings, stores: list[Store]) -> None:
    """A .env for `dagster dev` (it loads .env): the demo's settings and tokens."""
    env_file = root / ".env"
    if env_file.exists() and not env_file.read_text().startswith(ENV_MARKER):
        return  # the user's own .env: leave it alone
    lines = [
        ENV_MARKER + ": `dagster dev` then shows the demo's stores and runs.",
        f"ECOSYNC_DATABASE_URL={settings.database_url}",
        f"ECOSYNC_REDIS_URL={settings.redis_url}",
        f"ECOSYNC_STORES_FILE={settings.stores_file}",
        f"ECOSYNC_BACKUP_PATH={settings.backup_path}",
    ]
    lines += [f"{s.token_env}={os.environ[s.token_env]}" for s in stores]
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_file.chmod(0o600)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Demo:
    """The demo's moving parts: simulator, settings, Dagster definitions and instance."""

    def __init__(
        self,
        simulator: Simulator,
        settings: Settings,
        stores: list[Store],
        instance: DagsterInstance,
        say: Callable[[str], None],
    ) -> None:
        self.simulator = simulator
        self.settings = settings
        self.stores = stores
        self.instance = instance
        self.say = say
        self.defs: Definitions = build_definitions(settings, resources=ecosync_resources(settings))
        # What store_partitions_sensor does on its first tick under `dagster dev`.
        register_stores(instance, [store.identifier for store in stores])
        self.report = DemoReport()

    def sync(self, store: str, budget_seconds: float) -> dict[str, Any]:
        """One run of the sync_orders job for a store partition; its metadata as values."""
        job = self.defs.resolve_job_def("sync_orders")
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=store,
            run_config={
                "ops": {"new_orders": {"config": {"budget_seconds": budget_seconds}}},
                **RUN_LOGS,
            },
            tags={"ecosync/demo": "true"},
        )
        self.report.runs += 1
        materialization = result.asset_materializations_for_node("new_orders")[0]
        return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}

    def sync_to_end(self, store: str, budget_seconds: float) -> list[dict[str, Any]]:
        """Runs of one store until one reaches the end (a budgeted first import)."""
        runs = []
        while True:
            meta = self.sync(store, budget_seconds)
            runs.append(meta)
            if meta["reached_end"]:
                return runs

    def sensor_tick(self, cursor: str | None) -> tuple[SensorResult | SkipReason, str | None]:
        """Evaluate cache_loss_sensor once, and record its asset events, as the daemon would."""
        sensor = self.defs.resolve_sensor_def("cache_loss_sensor")
        with build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            resources=ecosync_resources(self.settings),
            definitions=self.defs,
        ) as context:
            result = sensor(context)
        assert isinstance(result, (SensorResult, SkipReason))
        for event in result.asset_events if isinstance(result, SensorResult) else []:
            self.instance.report_runless_asset_event(event)
        new_cursor = result.cursor if isinstance(result, SensorResult) else cursor
        return result, new_cursor

    def launch_recovery(self, result: SensorResult) -> tuple[str, dict[str, str]]:
        """Run what the sensor requested: recover_sync_positions, tagged with its run_key.

        Returns the run id and, per store, the layer its position was restored from.
        """
        request = (result.run_requests or [])[0]
        job = self.defs.resolve_job_def("recover_sync_positions")
        tags = {
            **request.tags,
            "dagster/run_key": request.run_key or "",
            "dagster/sensor_name": "cache_loss_sensor",
        }
        run = job.execute_in_process(
            instance=self.instance, tags=tags, raise_on_error=False, run_config=RUN_LOGS
        )
        self.report.runs += 1
        layers: dict[str, str] = {}
        if run.success:
            for report in run.output_for_node("verify_positions"):
                layers[report.store] = str(report.restored_from)
        return run.run_id, layers


def run_demo(
    root: Path,
    *,
    small: bool = False,
    redis_url: str = DEMO_REDIS_URL,
    port: int = 8765,
    budget_seconds: float | None = None,
    say: Callable[[str], None] = print,
) -> DemoReport:
    """Play the scenario; return the report (the CLI prints it)."""
    started = time.monotonic()
    data = root / "data"
    demo_dir = data / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)  # the demo's own files, from its last run
    demo_dir.mkdir(parents=True)
    base = load_stores(data / "stores.yaml")
    specs = [_scaled(StoreSpec.from_store(s), SMALL_DIVISOR if small else 1) for s in base]
    budget = budget_seconds or (0.5 if small else 20.0)
    redis_ok = _check_own_redis(redis_url)
    if not redis_ok:
        say(
            f"Redis is not reachable at {redis_url}. Start it with `redis-server --port 6379` "
            "(or scripts/services.sh); meanwhile the demo shows the sync running from the "
            "JSON backup and the database."
        )
    else:
        _flush_own_redis(redis_url)
    simulator = Simulator(specs)
    tokens = {s.token_env: simulator.token(s.identifier) for s in base}
    with SimulatorServer(simulator, port=free_port(port)) as server:
        stores_file = demo_dir / "stores.yaml"
        write_stores_file(stores_file, base, simulator, server.url)
        settings = Settings(
            database_url=f"sqlite:///{demo_dir / 'orders.db'}",
            redis_url=redis_url,
            stores_file=str(stores_file),
            backup_path=str(demo_dir / "sync-positions.json"),
        )
        env = {
            "DAGSTER_HOME": str(data),
            "ECOSYNC_DATABASE_URL": settings.database_url,
            "ECOSYNC_REDIS_URL": settings.redis_url,
            "ECOSYNC_STORES_FILE": settings.stores_file,
            "ECOSYNC_BACKUP_PATH": settings.backup_path,
            **tokens,
        }
        with _environment(env):
            stores = load_stores(stores_file)
            instance = DagsterInstance.get()
            demo = Demo(simulator, settings, stores, instance, say)
            demo.report.redis_available = redis_ok
            _play(demo, budget, redis_ok)
            _write_env_file(root, settings, stores)
            instance.dispose()
    demo.report.seconds = round(time.monotonic() - started, 1)
    return demo.report


def _play(demo: Demo, budget: float, redis_ok: bool) -> None:
    say, sim = demo.say, demo.simulator
    rows = {s.identifier: StoreRow(s.identifier) for s in demo.stores}
    say(f"1. First import of {len(rows)} stores ({budget:g} s budget per run), then catch up")
    for store in rows:
        runs = demo.sync_to_end(store, budget)
        orders = sum(int(r["orders_new"]) for r in runs)
        catch_up = demo.sync(store, budget)
        say(
            f"   {store}: {orders:,} orders in {len(runs)} runs of {runs[0]['pages_fetched']}+ "
            f"pages; catch-up run: {catch_up['api_calls']} API calls, "
            f"{catch_up['orders_new']} new orders"
        )
        rows[store].orders = sim.count(store)
    cursor = None
    if redis_ok:
        first, cursor = demo.sensor_tick(None)
        say(f"   sensor: {_describe(first)}")
    backup = build_backup(demo.settings).read_all()
    for store, row in rows.items():
        position = backup.get(store)
        row.page_before = position.last_page if position else None
        row.last_id_before = position.target if position else None
    say("2. New orders arrive in EcoManager")
    for store, row in rows.items():
        row.new_orders = NEW_ORDERS.get(store, 25)
        sim.add_orders(store, row.new_orders)
    write_stores_file(Path(demo.settings.stores_file), demo.stores, sim, str(sim.url))
    sim.reset_counts()
    say(f"3. Redis is cleared: FLUSHDB on the demo's own database ({demo.settings.redis_url})")
    if redis_ok:
        _flush_own_redis(demo.settings.redis_url)
        tick, cursor = demo.sensor_tick(cursor)
        demo.report.sensor_message = _describe(tick)
        say(f"4. The cache_loss_sensor ticks: {demo.report.sensor_message}")
        if isinstance(tick, SensorResult) and tick.run_requests:
            run_id, layers = demo.launch_recovery(tick)
            demo.report.recovery_run_id = run_id
            for store, layer in layers.items():
                rows[store].restored_from = layer
            run = demo.instance.get_run_by_id(run_id)
            say(f"   recover_sync_positions run {run_id[:8]}: {run.status.value if run else '?'}")
        launched = (
            {r.run_key for r in (tick.run_requests or [])}
            if isinstance(tick, SensorResult)
            else set()
        )
        for n in (1, 2):
            again, cursor = demo.sensor_tick(cursor)
            requests = again.run_requests if isinstance(again, SensorResult) else None
            if requests and {r.run_key for r in requests} <= launched:
                say(f"   tick +{n}: the same loss event, same run_key: no second run")
            else:
                say(f"   tick +{n}: {_describe(again)}")
        saw = _sensor_saw(tick)
        for row in rows.values():
            row.sensor_saw = saw
    else:
        demo.report.sensor_message = "Redis unreachable: nothing to flush, the sensor skips"
    recovery_calls = {store: sim.request_count(store) for store in rows}
    say("5. Sync again")
    for store, row in rows.items():
        meta = demo.sync(store, budget * 10)
        row.restored_from = row.restored_from or str(meta["position_source"])
        row.resume_calls = recovery_calls[store] + int(meta["api_calls"])
        row.new_synced = int(meta["orders_new"])
        row.old_calls = row.orders // OLD_PER_PAGE + 1
        row.bound = goal_bound(row.new_orders, 0)
    with Runtime.from_settings(demo.settings, stores=demo.stores) as runtime:
        for row in rows.values():
            ids = set(iter_order_ids(runtime.engine, row.store))
            truth = set(sim.ids(row.store))
            row.missing = len(truth - ids)
            row.duplicated = duplicate_count(runtime.engine, row.store)
            row.orders = len(truth)
    demo.report.rows = list(rows.values())


def _describe(result: SensorResult | SkipReason) -> str:
    if isinstance(result, SkipReason):
        return f"skip: {result.skip_message}"
    if result.run_requests:
        request = result.run_requests[0]
        return f"cache loss {request.tags.get(LOSS_EVENT_TAG, request.run_key)}: run requested"
    skip = result.skip_reason
    return f"skip: {skip.skip_message}" if skip is not None else "nothing to do"


def _sensor_saw(result: SensorResult | SkipReason) -> str:
    if isinstance(result, SensorResult) and result.run_requests:
        return result.run_requests[0].tags.get(REDIS_STATE_TAG, "loss")
    return "healthy"


COLUMNS = (
    "store",
    "orders",
    "page before",
    "last id before",
    "sensor saw",
    "restored from",
    "resume calls",
    "bound",
    "new orders",
    "synced",
    "missing",
    "duplicated",
    "old approach calls",
)


def report_rows(report: DemoReport) -> list[tuple[str, ...]]:
    """The final table's rows, as text."""
    return [
        (
            r.store,
            f"{r.orders:,}",
            str(r.page_before),
            str(r.last_id_before),
            r.sensor_saw,
            r.restored_from,
            str(r.resume_calls),
            str(r.bound),
            str(r.new_orders),
            str(r.new_synced),
            str(r.missing),
            str(r.duplicated),
            f"{r.old_calls:,}",
        )
        for r in report.rows
    ]
