"""ecosync bench webhooks: from an order's creation in EcoManager to its row, pushed.

The simulator serves the demo's five stores (small, same id shapes) and delivers their
webhooks; the receiver is the real ``ecosync webhooks serve``, a process of its own,
registered through the simulator's webhooks API with ``register``. Orders are created
at a steady rate across the stores, with status changes and a few deletions, in two
phases of the same length:

1. the receiver up all along;
2. the receiver SIGKILLed ``down_at`` seconds in and started again ``down_seconds``
   later: EcoManager's retries (time-scaled, so a day of retries fits in minutes)
   bring what it missed.

For each phase: the latency from the order's creation in the simulator to its row in
the orders table (``first_seen_at``), p50, p95 and max; the events the simulator sent
against those stored in the inbox (lost), duplicate rows, failed delivery attempts,
and whether the orders table equals the simulator for every order of the phase.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ServerError, free_port
from ecosync_pipeline.config import Store, load_stores
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.lab.bench.resources import Backend, bench_database, temporary_folder
from ecosync_pipeline.lab.bench.webhooks_report import PhaseResult, WebhooksReport, measure
from ecosync_pipeline.lab.simulator import Change, Simulator, SimulatorServer, StoreSpec
from ecosync_pipeline.lab.simulator.orders import NEXT_STATE
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.storage.schema import webhook_inbox
from ecosync_pipeline.webhooks.registration import WebhooksApi, register

Progress = Callable[[str], None]
BENCH_SPECS = (
    StoreSpec("NATUR", count=300, gap_rate=0.03, catalog="cosmetics"),
    StoreSpec("PURNA", first_id=500_000, count=300, stride=7, gap_rate=0.03, catalog="home"),
    StoreSpec("DILST", count=300, gap_rate=0.03, catalog="fashion"),
    StoreSpec("MGSTR", count=300, gap_rate=0.03, catalog="electronics"),
    StoreSpec("JWLR", count=300, gap_rate=0.03, catalog="jewelry"),
)
"""The demo's stores with the demo's id shapes, 300 orders each: only new orders matter."""


def _write_stores(folder: Path, simulator: Simulator) -> Path:
    entries = [
        {
            "identifier": spec.identifier,
            "name": spec.name,
            "base_url": simulator.store_url(spec.identifier),
            "token_env": spec.token_env,
            "requests_per_second": 50,
            "webhook_secret_env": f"ECOSYNC_BENCH_WEBHOOK_SECRET_{spec.identifier}",
        }
        for spec in BENCH_SPECS
    ]
    path = folder / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": entries}), encoding="utf-8")
    return path


class ReceiverProcess:
    """``ecosync webhooks serve`` in a child process, on a fixed port, killable.

    It is ready once its activation check for ``probe`` (a store it serves) answers.
    """

    def __init__(self, port: int, env: dict[str, str], log: Path, probe: str = "NATUR") -> None:
        self.port = port
        self.probe = probe
        self.url = f"http://127.0.0.1:{port}"
        self._env = env
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        command = [
            str(Path(sys.executable).with_name("ecosync")),
            "webhooks",
            "serve",
            "--port",
            str(self.port),
        ]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(command, env=self._env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"the receiver exited at start-up; see {self._log}")
            try:
                if httpx.get(f"{self.url}/webhooks/{self.probe}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServerError(f"the receiver did not answer on {self.url}; see {self._log}")

    @property
    def running(self) -> bool:
        """Whether the receiver's process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or an OOM kill."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None


class Load:
    """Orders created at ``rate`` a second round the stores, status changes and deletions."""

    def __init__(self, simulator: Simulator, rate: float, status_rate: float) -> None:
        self.simulator = simulator
        self.rate = rate
        self.status_every = max(1, round(rate / status_rate)) if status_rate > 0 else 0
        self.delete_every = max(1, round(rate * 5))  # one deletion every 5 seconds
        self.created: dict[tuple[str, int], float] = {}
        self.changes = {"created": 0, "status": 0, "deleted": 0}
        self._lock = threading.Lock()
        self._rng = random.Random(0)

    def observe(self, change: Change) -> None:
        with self._lock:
            self.changes[change.kind] += 1
            if change.kind == "created":
                self.created[(change.store, change.order_id)] = change.at

    def run(self, seconds: float) -> list[tuple[str, int]]:
        """Create orders for ``seconds``; return (store, id) of the orders created."""
        stores = [s.identifier for s in BENCH_SPECS]
        ids: list[tuple[str, int]] = []
        start = time.monotonic()
        for k in range(int(self.rate * seconds)):
            delay = start + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            store = stores[k % len(stores)]
            ids.append((store, self.simulator.add_orders(store, 1)[0]))
            if self.status_every and k % self.status_every == self.status_every - 1:
                self._change_status(self._rng.choice(ids))
            if k % self.delete_every == self.delete_every - 1:
                victim = self._rng.choice(ids)
                self.simulator.delete_orders(victim[0], [victim[1]])
        return ids

    def _change_status(self, target: tuple[str, int]) -> None:
        store, order_id = target
        current = self.simulator.order(store, order_id)
        if current is not None:
            self.simulator.set_status(store, order_id, NEXT_STATE[current["order_state_name"]])


def _inbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(webhook_inbox)).scalar_one())


def _pending(engine: Engine) -> int:
    stmt = select(func.count()).where(webhook_inbox.c.applied_at.is_(None))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _drain(simulator: Simulator, engine: Engine, timeout: float) -> None:
    """Wait for the simulator's queue to empty and the inbox to be applied."""
    dispatcher = simulator.webhooks.dispatcher
    if not dispatcher.wait_idle(timeout):
        raise EcosyncError(f"webhook deliveries still pending after {timeout:.0f} s")
    deadline = time.monotonic() + 30
    while _pending(engine) and time.monotonic() < deadline:
        time.sleep(0.1)


@contextmanager
def _world(
    backend: str, time_scale: float, progress: Progress
) -> Iterator[tuple[Simulator, list[Store], Engine, ReceiverProcess]]:
    kind: Backend = "sqlite" if backend == "sqlite" else "postgresql"
    with (
        temporary_folder("ecosync-bench-webhooks-") as folder,
        bench_database(kind, folder=folder) as db,
    ):
        engine = make_engine(db)
        migrate(engine)
        simulator = Simulator(BENCH_SPECS)
        dispatcher = simulator.webhooks.dispatcher
        dispatcher.policy = dispatcher.policy.updated(time_scale=time_scale)
        with SimulatorServer(simulator):
            stores = load_stores(_write_stores(folder, simulator))
            env = dict(os.environ)
            env.update(ECOSYNC_DATABASE_URL=db, ECOSYNC_STORES_FILE=str(folder / "stores.yaml"))
            for store in stores:
                env[_secret_variable(store)] = secrets.token_hex(32)
            receiver = ReceiverProcess(free_port(), env, folder / "receiver.log")
            progress(f"receiver: ecosync webhooks serve on {receiver.url}")
            receiver.start()
            try:
                for store in stores:
                    with WebhooksApi(store, simulator.token(store.identifier)) as api:
                        hook_url = f"{receiver.url}/webhooks/{store.identifier}"
                        register(api, hook_url, env[_secret_variable(store)])
                yield simulator, stores, engine, receiver
            finally:
                receiver.stop()
                engine.dispose()


def _secret_variable(store: Store) -> str:
    return f"ECOSYNC_BENCH_WEBHOOK_SECRET_{store.identifier}"


def _phase(
    name: str,
    simulator: Simulator,
    engine: Engine,
    load: Load,
    seconds: float,
    outage: Callable[[], None] | None,
) -> PhaseResult:
    counts = simulator.webhooks.dispatcher.counts
    events_before, failed_before = counts["events"], counts["failed_attempts"]
    inbox_before = _inbox_count(engine)
    changes_before = dict(load.changes)
    breaker = threading.Thread(target=outage, daemon=True) if outage else None
    if breaker is not None:
        breaker.start()
    ids = load.run(seconds)
    if breaker is not None:
        breaker.join()
    _drain(simulator, engine, timeout=600)
    return measure(
        name,
        simulator,
        engine,
        ids,
        load.created,
        events=counts["events"] - events_before,
        stored=_inbox_count(engine) - inbox_before,
        failed_attempts=counts["failed_attempts"] - failed_before,
        exhausted=counts["exhausted"],
        changes={k: v - changes_before[k] for k, v in load.changes.items()},
    )


def run_webhooks_bench(
    *,
    rate: float = 20.0,
    seconds: float = 60.0,
    status_rate: float = 4.0,
    down_at: float = 10.0,
    down_seconds: float = 30.0,
    time_scale: float = 0.01,
    backend: str = "postgresql",
    progress: Progress = lambda _: None,
) -> WebhooksReport:
    """Both phases; see the module docstring."""
    with _world(backend, time_scale, progress) as (simulator, _stores, engine, receiver):
        load = Load(simulator, rate, status_rate)
        simulator.add_observer(load.observe)
        progress(f"phase 1: {rate:g} orders/s for {seconds:g} s, receiver up")
        up = _phase("receiver up", simulator, engine, load, seconds, None)

        unanswered: list[float] = []

        def outage() -> None:
            time.sleep(down_at)
            progress(f"  receiver SIGKILLed at {down_at:g} s")
            killed = time.monotonic()
            receiver.kill()
            time.sleep(down_seconds)
            receiver.start()
            unanswered.append(time.monotonic() - killed)
            progress(
                f"  receiver started again {down_seconds:g} s later, answering after "
                f"{unanswered[0]:.1f} s"
            )

        progress(f"phase 2: the same, receiver killed for {down_seconds:g} s")
        down = _phase(
            f"receiver killed {down_seconds:g} s", simulator, engine, load, seconds, outage
        )
        policy = simulator.webhooks.dispatcher.policy
    return WebhooksReport(
        phases=[up, down],
        rate=rate,
        seconds=seconds,
        backend=backend,
        retry_schedule=[policy.interval(k) for k in range(1, policy.retries + 1)],
        load_average=os.getloadavg()[0],
        unanswered_seconds=unanswered[0] if unanswered else 0.0,
    )


__all__: Sequence[str] = ["BENCH_SPECS", "ReceiverProcess", "run_webhooks_bench"]
