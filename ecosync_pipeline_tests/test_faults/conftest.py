"""Fixtures of the fault-injection suite, and the summary of its figures.

Every scenario records a FaultFigures row; at the end of the session the rows are
printed as one table by pytest's terminal reporter, so the figures show with or
without ``-s``. ``--faults-large`` switches every scenario to its larger form.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline_tests.faults_support import (
    ARRIVAL_RATE,
    LARGE,
    SMALL,
    FaultFigures,
    Scale,
    summary_lines,
)
from ecosync_pipeline_tests.helpers import World

FIGURES = pytest.StashKey[list[FaultFigures]]()
FORM = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    """The small form (CI) or, with --faults-large, the large one."""
    chosen = LARGE if request.config.getoption("--faults-large") else SMALL
    request.config.stash[FORM] = chosen.name
    return chosen


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Callable[[str], FaultFigures]]:
    """``record(fault)`` starts the test's row of figures; it is timed and kept on failure too."""
    rows = request.config.stash.setdefault(FIGURES, [])
    mine: list[tuple[FaultFigures, float]] = []

    def start(fault: str) -> FaultFigures:
        figures = FaultFigures(fault)
        mine.append((figures, time.monotonic()))
        return figures

    yield start
    for figures, started in mine:
        figures.seconds = time.monotonic() - started
        rows.append(figures)


@pytest.fixture
def scenario(
    build: Callable[..., World], record: Callable[[str], FaultFigures]
) -> Callable[..., tuple[World, FaultFigures]]:
    """``scenario(fault, world_options=None, **faults)``: how most scenarios begin, a world
    built (with ``world_options``), the fault's row of figures started, and orders arriving
    during runs along with the simulator ``faults``."""

    def start(
        fault: str, *, world_options: dict[str, Any] | None = None, **faults: Any
    ) -> tuple[World, FaultFigures]:
        world = build(**(world_options or {}))
        figures = record(fault)
        world.simulator.set_faults(None, arrival_rate=ARRIVAL_RATE, **faults)
        return world, figures

    return start


@pytest.fixture
def specs(scale: Scale) -> list[StoreSpec]:
    """The scale's five stores."""
    return list(scale.specs)


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """The fault suite runs on PostgreSQL (its connections are what some faults kill)."""
    return postgres_url


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    rows = config.stash.get(FIGURES, [])
    if not rows:
        return
    form = config.stash.get(FORM, "small")
    total = sum(r.seconds for r in rows)
    terminalreporter.write_sep("=", f"fault injection, {form} form ({total:.1f} s)")
    for line in summary_lines(sorted(rows, key=lambda r: r.fault)):
        terminalreporter.write_line(line)
