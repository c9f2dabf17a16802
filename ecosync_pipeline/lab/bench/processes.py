"""The processes of the fan-out benchmark: a Dagster instance on PostgreSQL, the daemon,
Celery workers, and the memory they use (read from /proc, Linux).

The instance is a folder (DAGSTER_HOME) holding a dagster.yaml built from the project's
own files: data/dagster-production.yaml (run queue, PostgreSQL storage reached through
PgBouncer) or data/dagster-celery.yaml (the same, with runs launched on Celery workers).
The code location is served by a `dagster code-server start` process of its own, as
data/workspace-production.yaml has it. Only the database, the code server's port and
the Celery queue are the benchmark's own; PgBouncer is the one scripts/services.sh
starts (data/pgbouncer.ini), in front of the PostgreSQL server the database is on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from ecosync_pipeline.errors import ConfigError

DATA = Path(__file__).resolve().parents[3] / "data"
PAGE_SIZE = 4096
PGBOUNCER_PORT = 6432
"""data/pgbouncer.ini's port."""


def pgbouncer_port(host: str) -> int:
    """PgBouncer's port on ``host``; ConfigError saying how to start it when it is not up."""
    try:
        socket.create_connection((host, PGBOUNCER_PORT), timeout=2).close()
    except OSError as exc:
        raise ConfigError(
            f"PgBouncer is not running on {host}:{PGBOUNCER_PORT} ({exc}): the production "
            "layout reaches Dagster's PostgreSQL through it. Start it with `bash "
            "scripts/services.sh` (apt-get install pgbouncer first if it is not installed)."
        ) from exc
    return PGBOUNCER_PORT


def instance_home(
    folder: Path, dagster_url: str, *, celery: bool, code_server_port: int
) -> tuple[Path, dict[str, str]]:
    """A DAGSTER_HOME on ``dagster_url`` (through PgBouncer on the same host), and the
    variables its dagster.yaml reads; the workspace points at the code server on
    ``code_server_port``."""
    home = folder / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    source = DATA / ("dagster-celery.yaml" if celery else "dagster-production.yaml")
    (home / "dagster.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    url = make_url(dagster_url)
    host = url.host or "127.0.0.1"
    environ = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": str(pgbouncer_port(host)),
        "DAGSTER_PG_DB": url.database or "",
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
    }
    workspace = yaml.safe_load((DATA / "workspace-production.yaml").read_text(encoding="utf-8"))
    workspace["load_from"][0]["grpc_server"]["port"] = code_server_port
    (folder / "workspace.yaml").write_text(yaml.safe_dump(workspace), encoding="utf-8")
    return home, environ


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextmanager
def started(
    argv: Sequence[str], environ: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of its own group (so its children stop with it), logging to ``log``."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def code_server_argv(port: int) -> list[str]:
    """``dagster code-server start`` serving the code location on ``port``."""
    return [
        _bin("dagster"), "code-server", "start", "-m", "ecosync_pipeline.definitions",
        "--location-name", "ecosync", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip


def wait_for_code_server(port: int, timeout: float = 120) -> None:
    """Return once the code server on ``port`` answers Dagster's health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check = [_bin("dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise TimeoutError(f"the code server on port {port} did not answer within {timeout:.0f} s")


def daemon_argv(folder: Path) -> list[str]:
    """``dagster-daemon run`` on the benchmark's workspace."""
    return [_bin("dagster-daemon"), "run", "-w", str(folder / "workspace.yaml")]


def celery_worker_argv(
    name: str, queue: str, broker: str, *, loglevel: str = "WARNING"
) -> list[str]:
    """One Celery worker running one Dagster run at a time from ``queue``.

    ``--pool solo`` runs each task in the worker process itself: the worker imports
    Dagster and the code location once, not once per run.
    """
    return [
        _bin("celery"),
        "-A",
        "dagster_celery.app",
        "-b",
        broker,
        "worker",
        "--pool",
        "solo",
        "--prefetch-multiplier",
        "1",
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]


def wait_for_lines(logs: Sequence[Path], text: str, timeout: float) -> bool:
    """True once every file in ``logs`` holds ``text`` (a worker's "ready."), else False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.exists() and text in p.read_text(errors="replace") for p in logs):
            return True
        time.sleep(0.2)
    return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(p) for p in text.split())
    return found


def tree(pids: Sequence[int]) -> set[int]:
    """The processes ``pids`` and all their descendants, alive now."""
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(_children(pid))
    return seen


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * PAGE_SIZE


class MemorySampler:
    """The peak summed RSS of process trees, and every pid seen, sampled in a thread."""

    def __init__(self, roots: Sequence[int], interval: float = 0.2) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.peak = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecosync-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.roots)
            self.seen |= pids
            self.peak = max(self.peak, sum(rss_bytes(p) for p in pids))
            self._stop.wait(self.interval)
