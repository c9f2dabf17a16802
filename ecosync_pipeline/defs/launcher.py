"""A run launcher whose run workers have imported Dagster and the code location already.

Dagster's default launcher asks the code server for each run, which starts a fresh
interpreter: on this project's 2-core machine about 1.2 s of imports before the run
writes its first event, and more when a tick starts two runs at once on two cores. A
tick of 100 idle stores syncs in about 2 s, so that start was most of its overhead.

``PrestartedRunLauncher`` keeps ``spares`` processes waiting (defs/prestarted.py), each
past its imports; a run is handed to one of them on stdin and executes exactly as
``dagster api execute_run`` does (the command Dagster's container launchers run), one
process per run, on the code location's Python and in its working directory. Spares
are started after runs end, never while the runs they would compete with are running,
and replaced after ``max_spare_age_seconds``; a spare whose code changed on disk since
its imports imports afresh before its run. A run with no spare ready, or whose code
location runs on another Python, starts its own process as the default launcher would.

The runs' processes are started in their own session: they finish even if the daemon
stops. Cancelling a run sends its process SIGTERM (Dagster turns it into an
interrupt), and run monitoring is told when a run's process has gone.

Used by data/dagster-production.yaml::

    run_launcher:
      module: ecosync_pipeline.defs.launcher
      class: PrestartedRunLauncher
      config:
        spares: 2
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import Field, IntSource
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

logger = logging.getLogger(__name__)

WORKER_TAG = "ecosync/run_worker"
"""host:pid:start of the process executing a run, for cancelling and monitoring it."""
DEFAULT_SPARES = 2
DEFAULT_MAX_SPARE_AGE_SECONDS = 600
TEND_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Origin:
    """What a spare (always on this Python) must match to execute a run: the code
    location's module and folder."""

    module: str
    working_directory: str


@dataclass
class Spare:
    process: subprocess.Popen[bytes]
    origin: Origin
    started: float


def run_command(args: ExecuteRunArgs) -> list[str]:
    """``dagster api execute_run <args>`` on the code location's own Python.

    Dagster's default launcher runs a run in its code server's interpreter; a code
    location that names no entry point of its own (or plain ``dagster``) gets the same
    here: ``<its executable> -m dagster``.
    """
    command = list(args.get_command_args())
    entry = args.job_origin.repository_origin.entry_point
    if not entry or list(entry) == ["dagster"]:
        executable = args.job_origin.repository_origin.executable_path
        command[: len(entry or ["dagster"])] = [executable, "-m", "dagster"]
    return command


def working_directory(args: ExecuteRunArgs) -> str:
    """The code location's folder ("" when its pointer names none)."""
    pointer = args.job_origin.repository_origin.code_pointer
    return getattr(pointer, "working_directory", "") or ""


def run_origin(command: list[str], args: ExecuteRunArgs) -> Origin | None:
    """The origin a spare can serve, or None when the run must start its own process.

    A spare is ``dagster api execute_run`` started early on this Python: only a run whose
    command is exactly that may use one.
    """
    if command[:3] != [sys.executable, "-m", "dagster"]:
        return None
    module = getattr(args.job_origin.repository_origin.code_pointer, "module", "") or ""
    return Origin(module, working_directory(args))


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks (Linux), None if it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None if Path("/proc/self/stat").exists() else "?"
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def alive(worker: str) -> bool | None:
    """Whether the process a WORKER_TAG names still runs; None when it is on another host."""
    host, pid, start = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    now = process_start(int(pid))
    if now == "?":  # no /proc: the pid is all there is to go on
        try:
            os.kill(int(pid), 0)
        except OSError:
            return False
        return True
    return now is not None and now == start


class PrestartedRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process that has imported Dagster and the code location."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        spares: int = DEFAULT_SPARES,
        max_spare_age_seconds: int = DEFAULT_MAX_SPARE_AGE_SECONDS,
    ) -> None:
        self._inst_data = inst_data
        self.spares = spares
        self.max_spare_age_seconds = max_spare_age_seconds
        self._lock = threading.Lock()
        self._tending = threading.Lock()
        self._waiting: list[Spare] = []
        self._running: list[subprocess.Popen[bytes]] = []
        self._origin: Origin | None = None
        self._stop = threading.Event()
        self._tender: threading.Thread | None = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "spares": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_SPARES,
                description="Run workers kept waiting with their imports done (0: none).",
            ),
            "max_spare_age_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_MAX_SPARE_AGE_SECONDS,
                description="A spare older than this is replaced, so new code reaches runs.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PrestartedRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    # Launching

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no code origin to load its job from")
        args = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        )
        command = run_command(args)
        wanted = run_origin(command, args)
        payload = serialize_value(args)
        process = self._hand_to_spare(run, wanted, payload) if wanted else None
        prestarted = process is not None
        if process is None:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=working_directory(args) or None,
            )
            with self._lock:
                self._running.append(process)
            try:
                self._tag(run, process.pid)
            except Exception:
                process.kill()  # the launch fails; the run must not execute unrecorded
                raise
        with self._lock:
            if wanted is not None:
                self._origin = wanted
            self._start_tending()
        try:
            self._instance.report_engine_event(
                f"Run worker process {process.pid} started"
                + (" (prestarted: Dagster and the code location imported)" if prestarted else ""),
                run,
                cls=self.__class__,
            )
        except Exception:  # the run executes already; its own events follow
            logger.exception("run %s: recording its run worker's start failed", run.run_id)

    def _tag(self, run: DagsterRun, pid: int) -> None:
        start = process_start(pid) or "?"
        self._instance.add_run_tags(
            run.run_id, {WORKER_TAG: f"{socket.gethostname()}:{pid}:{start}"}
        )

    def _hand_to_spare(
        self, run: DagsterRun, origin: Origin, payload: str
    ) -> subprocess.Popen[bytes] | None:
        """The spare now executing the run, or None when none was ready for this origin.

        The spare counts as running from the moment it is taken (tending never sees a
        gap), and the run is tagged with it before it gets the run: a run is never
        executing without its worker recorded.
        """
        while True:
            with self._lock:
                spare = next((s for s in self._waiting if s.origin == origin), None)
                if spare is None:
                    return None
                self._waiting.remove(spare)
                self._running.append(spare.process)
            if spare.process.poll() is not None:
                continue  # it died waiting (killed); tending reaps it
            try:
                self._tag(run, spare.process.pid)
            except Exception:
                self._release(spare)  # it never got the run
                raise
            try:
                assert spare.process.stdin is not None
                spare.process.stdin.write(payload.encode() + b"\n")
                spare.process.stdin.close()
            except OSError:
                continue  # it died just now; the next spare or a new process gets the tag
            return spare.process

    # Spares

    def _start_tending(self) -> None:
        # Started by the first launch (not in the webserver, which only cancels runs); it
        # also reaps the runs' processes, so it runs with no spares too.
        if self._tender is None:
            self._tender = threading.Thread(
                target=self._tend, name="ecosync-run-spares", daemon=True
            )
            self._tender.start()

    def _tend(self) -> None:
        while not self._stop.wait(TEND_INTERVAL_SECONDS):
            try:
                self.tend()
            except Exception:  # the next round tries again; launching never depends on it
                logger.exception("keeping the prestarted run workers failed")

    def tend(self) -> None:
        with self._tending:
            self._tend_once()

    def _tend_once(self) -> None:
        """One round: reap ended runs, drop dead or old spares, start at most one spare.

        A spare is started only while none of this launcher's runs is running, so its
        imports never compete with the runs of a tick for the machine's cores.
        """
        now = time.monotonic()
        retired: list[Spare] = []
        # Dagster builds an instance's launcher on first use; two threads launching the
        # first runs at once may each build one, and the instance keeps one of them. Only
        # that one keeps spares (the other still reaps the runs it launched).
        kept = not self.has_instance or self._instance.run_launcher is self
        with self._lock:
            self._running = [p for p in self._running if p.poll() is None]
            keep = []
            for spare in self._waiting:
                if spare.process.poll() is not None:
                    continue
                old = now - spare.started > self.max_spare_age_seconds
                if old or spare.origin != self._origin or not kept:
                    retired.append(spare)
                else:
                    keep.append(spare)
            self._waiting = keep
            origin = self._origin
            short = kept and not self._running and len(self._waiting) < self.spares
        self._release(*retired)
        if origin is not None and short:
            spare = self._start_spare(origin)
            with self._lock:
                stopping = self._stop.is_set()
                if not stopping:
                    self._waiting.append(spare)
            if stopping:
                self._release(spare)

    def _start_spare(self, origin: Origin) -> Spare:
        process = subprocess.Popen(
            [sys.executable, "-m", "ecosync_pipeline.defs.prestarted", origin.module,
             origin.working_directory],
            stdin=subprocess.PIPE,
            start_new_session=True,
            cwd=origin.working_directory or None,
        )  # fmt: skip
        return Spare(process, origin, time.monotonic())

    @staticmethod
    def _release(*spares: Spare) -> None:
        """End waiting spares: at end of input each exits without running anything."""
        for spare in spares:
            with contextlib.suppress(OSError):
                if spare.process.stdin is not None:
                    spare.process.stdin.close()
        for spare in spares:
            try:
                spare.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                spare.process.kill()
                spare.process.wait(timeout=10)

    def spare_pids(self) -> list[int]:
        """Process ids of the spares alive and waiting for a run."""
        with self._lock:
            return [s.process.pid for s in self._waiting if s.process.poll() is None]

    def dispose(self) -> None:
        """Stop tending and end the waiting spares; runs already handed out go on."""
        self._stop.set()
        if self._tender is not None:
            self._tender.join(timeout=5)
        with self._lock:
            spares, self._waiting = self._waiting, []
        self._release(*spares)

    # Cancelling and monitoring

    def terminate(self, run_id: str) -> bool:
        """Cancel a run: mark it canceling and send its process SIGTERM (an interrupt)."""
        if not self.has_instance:
            return False
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        worker = run.tags.get(WORKER_TAG)
        if worker is None or not alive(worker):
            self._instance.report_engine_event(
                f"Cannot cancel run {run_id}: its process ({worker or 'not started yet'}) is "
                "not running on this host; cancel it from the host that launched it.",
                run,
                cls=self.__class__,
            )
            return False
        self._instance.report_run_canceling(run)
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(int(worker.rsplit(":", 2)[1]), signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        # Run monitoring fails a run on any answer but RUNNING or SUCCESS: a run this
        # launcher cannot see (launched before it, or from another host) is left to the
        # instance's max_runtime_seconds instead.
        worker = run.tags.get(WORKER_TAG)
        if worker is None:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "not launched by PrestartedRunLauncher; not checked"
            )
        state = alive(worker)
        if state is None:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"run worker {worker} is on another host; not checked"
            )
        if state:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        latest = self._instance.get_run_by_id(run.run_id) if self.has_instance else None
        if latest is not None and latest.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS, "the run finished, then its worker")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {worker} has exited before the run finished (killed, or out "
            "of memory); the run's log shows where it stopped",
        )
