"""The adversarial server for the session, a CLI world per test, and the cases table.

Every case test records a row (orders missing, store blocked, token characters leaked,
peak memory, the message a user sees); the rows are printed as one table at the end of
the session, with or without ``-s``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecosync_pipeline.config import Settings
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.tables import format_table
from ecosync_pipeline_tests.adversarial import AdversarialServer
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, cli_world_for


@dataclass
class CaseRow:
    """One case of the table, as measured after the next good run."""

    case: str
    missing: int
    blocked: bool
    leaked: int
    peak_mb: float | None
    message: str


ROWS = pytest.StashKey[list[CaseRow]]()


@pytest.fixture(scope="session")
def adversarial() -> Iterator[AdversarialServer]:
    with AdversarialServer() as server:
        yield server


@pytest.fixture
def cli_world(
    adversarial: AdversarialServer, database_url: str, redis_url: str, tmp_path: Path
) -> CliWorld:
    """`ecosync sync` pointed at the adversarial server, on PostgreSQL and on SQLite."""
    return cli_world_for(adversarial, database_url, redis_url, tmp_path)


@pytest.fixture
def pg_world(
    adversarial: AdversarialServer, postgres_url: str, redis_url: str, tmp_path: Path
) -> CliWorld:
    """A CliWorld on PostgreSQL only, for cases about the client rather than the dialect."""
    return cli_world_for(adversarial, postgres_url, redis_url, tmp_path)


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the clients of ``sleepless_runtime`` ask for, recorded instead of slept."""
    return []


@pytest.fixture
def sleepless_runtime(pg_world: CliWorld, sleeps: list[float]) -> Iterator[Runtime]:
    """The runtime `ecosync sync` builds for ``pg_world``, its clients sleeping into
    ``sleeps`` (so a test of a long Retry-After takes no time)."""
    rt = Runtime(
        Settings.from_env(pg_world.env),
        client_options={"environ": pg_world.env, "sleep": sleeps.append},
    )
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def case_row(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``case_row(case, missing=, blocked=, leaked=, peak_mb=, message=)`` adds a table row."""
    rows = request.config.stash.setdefault(ROWS, [])

    def add(case: str, **figures: object) -> None:
        message = str(figures.pop("message", ""))
        rows.append(CaseRow(case, message=message.replace("\n", " ")[:160], **figures))  # type: ignore[arg-type]

    return add


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "bad input and faults: each case after the next good run")
    header = ("case", "missing", "blocked", "token chars leaked", "peak MB", "message a user sees")
    body = [(r.case, r.missing, r.blocked, r.leaked, r.peak_mb, r.message) for r in rows]
    for line in format_table(header, body).splitlines():
        terminalreporter.write_line(line)
