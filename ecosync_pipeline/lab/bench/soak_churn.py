"""The soak's moving parts, each a thread: the shop, the faults, and the ecosync commands.

- Shop: the simulator's switches (orders arriving, deleted and swapped under each
  request, open orders moving through their states as time passes, some wholesale
  orders too large for the receiver) plus a steady hand of its own (arrivals, status
  changes, deletions of recent and old orders, swaps), so webhooks flow even when no
  command reads.
- Chaos: at random moments one of: the receiver SIGKILLed and started again, Redis
  flushed (the benchmark's database only), the positions lost (Redis flushed and the
  JSON backup removed: the sync resumes from the database), every connection to the
  orders database terminated, the running sync SIGKILLed. Webhooks EcoManager disabled
  are switched on again, as the shop does after the email.
- CommandLoop: one ``ecosync`` command run again and again, each a process of its own,
  on its own schedule; every run's exit status and the errors it printed are kept.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.lab.bench.soak_world import SoakWorld
from ecosync_pipeline.lab.simulator import Change

CHAOS_KINDS = (
    "receiver killed",
    "redis flushed",
    "positions lost",
    "connections terminated",
    "sync killed",
)
_ERROR_WORD = re.compile(r"\b([A-Z][a-z]+(?:[A-Z][a-z]*)+|[a-z_.]*[A-Z]\w*Error)\b")


def _error_names() -> frozenset[str]:
    """Every exception name of ours, so a run's errors are found in what it printed."""
    names: set[str] = set()
    todo: list[type[BaseException]] = [EcosyncError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


@dataclass(frozen=True)
class CommandRun:
    """One run of an ecosync command: how it ended and the errors it named."""

    kind: str
    started: float
    seconds: float
    returncode: int
    errors: tuple[str, ...]
    killed: bool
    tail: str
    output: str = ""

    @property
    def failed(self) -> bool:
        return self.returncode != 0 and not self.killed


def _errors_named(stderr: str, known: frozenset[str]) -> tuple[str, ...]:
    found = [w for w in _ERROR_WORD.findall(stderr) if w in known or w.endswith("Error")]
    if not found and "Traceback" in stderr:
        last = stderr.strip().splitlines()[-1]
        found = [last.split(":", 1)[0][-60:]]
    return tuple(dict.fromkeys(found))


class CommandLoop:
    """Runs ``ecosync <args>`` every ``interval`` seconds (jittered) until stopped."""

    def __init__(
        self,
        kind: str,
        args: Sequence[str],
        env: dict[str, str],
        *,
        interval: float,
        timeout: float,
        rng: random.Random,
    ) -> None:
        self.kind = kind
        self.argv = [str(Path(sys.executable).with_name("ecosync")), *args]
        self.env = env
        self.interval = interval
        self.timeout = timeout
        self.rng = rng
        self.runs: list[CommandRun] = []
        self._known = _error_names()
        self._proc: subprocess.Popen[str] | None = None
        self._killed: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"soak-{kind}", daemon=True)

    def start(self) -> CommandLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No new run; the current one may finish (within its timeout)."""
        self._stop.set()
        self._thread.join(timeout=self.timeout + 30)

    def kill_running(self) -> bool:
        """SIGKILL the run in progress (its whole process group); False when none runs."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return False
            self._killed.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return True

    def run_once(self, *extra: str) -> CommandRun:
        """One run, waited for; killed (and counted failed) past ``timeout`` seconds."""
        started = time.monotonic()
        proc = subprocess.Popen(
            [*self.argv, *extra],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            # Beside the stores file: `ecosync` reads ./.env, and the project root's is the
            # demo's.
            cwd=Path(self.env["ECOSYNC_STORES_FILE"]).parent,
        )
        with self._lock:
            self._proc = proc
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\nTimedOut: killed after {self.timeout:.0f} s"
        with self._lock:
            self._proc = None
            killed = proc.pid in self._killed
        run = CommandRun(
            kind=self.kind,
            started=started,
            seconds=time.monotonic() - started,
            returncode=proc.returncode,
            errors=_errors_named(err, self._known | {"TimedOut"}),
            killed=killed,
            tail="\n".join(err.strip().splitlines()[-4:]),
            output=out,
        )
        self.runs.append(run)
        return run

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval * self.rng.uniform(0.5, 1.5))


class Shop:
    """The simulated shops moving: the simulator's churn switches and a steady hand."""

    def __init__(
        self,
        world: SoakWorld,
        rng: random.Random,
        switches: dict[str, float],
        tick: float = 0.3,
    ) -> None:
        self.world = world
        self.rng = rng
        self.switches = switches
        self.tick = tick
        self.changes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-shop", daemon=True)
        world.simulator.add_observer(self._observe)

    def _observe(self, change: Change) -> None:
        self.changes[change.kind] += 1

    def start(self) -> Shop:
        self.world.simulator.set_faults(None, **self.switches)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop moving: no more arrivals, deletions, swaps or status moves."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.world.simulator.clear_faults()
        self.world.simulator.remove_observer(self._observe)

    def _loop(self) -> None:
        sim = self.world.simulator
        stores = [s.identifier for s in self.world.stores]
        while not self._stop.wait(self.tick * self.rng.uniform(0.5, 1.5)):
            store = self.rng.choice(stores)
            roll = self.rng.random()
            if roll < 0.55:
                sim.add_orders(store, 1)
            elif roll < 0.8:
                sim.advance_statuses(store, 1)
            elif roll < 0.95:
                last = sim.last_id(store) or 0
                recent = self.rng.random() < 0.5
                sim.delete_random(store, 1, min_id=max(0, last - 200) if recent else None)
            else:
                sim.swap_orders(store, 1)


@dataclass
class Chaos:
    """Faults at random moments, every kind in turn (shuffled), from a thread."""

    world: SoakWorld
    rng: random.Random
    sync: CommandLoop
    every: float
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Chaos:
        self._thread = threading.Thread(target=self._loop, name="soak-chaos", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self._ensure_receiver()

    def _loop(self) -> None:
        kinds: list[str] = []
        while not self._stop.wait(self.every * self.rng.uniform(0.5, 1.5)):
            if not kinds:
                kinds = list(CHAOS_KINDS)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            try:
                self._act(kind)
            except Exception as exc:  # a fault that failed must not end the soak
                self.problems.append(f"{kind}: {type(exc).__name__}: {exc}")
            if not self.world.receiver.running:
                self.problems.append(f"the receiver had exited on its own before {kind}")
                self._ensure_receiver()
            self.counts["webhooks switched on again"] += self.world.reactivate_webhooks()

    def _act(self, kind: str) -> None:
        actions: dict[str, Callable[[], object]] = {
            "receiver killed": self._kill_receiver,
            "redis flushed": self.world.redis.flush,
            "positions lost": self._lose_positions,
            "connections terminated": self._terminate,
            "sync killed": self.sync.kill_running,
        }
        if actions[kind]() is not False:
            self.counts[kind] += 1

    def _lose_positions(self) -> None:
        self.world.redis.flush()
        self.world.backup.unlink(missing_ok=True)

    def _terminate(self) -> None:
        self.counts["connections killed"] += self.world.terminate_connections()

    def _kill_receiver(self) -> None:
        self.world.receiver.kill()
        self._stop.wait(self.rng.uniform(1.0, 3.0))
        self._ensure_receiver()

    def _ensure_receiver(self) -> None:
        """Start the receiver if it is down (three tries: its start meets the faults too)."""
        receiver = self.world.receiver
        for attempt in range(3):
            try:
                if not receiver.running:
                    receiver.start()
                return
            except Exception as exc:  # retried, then reported
                self.problems.append(f"receiver start {attempt + 1}: {exc}")
                receiver.kill()
