"""`ecosync demo`: the cache-loss scenario end to end, on the embedded defaults."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.tables import format_table


@click.command("demo")
@click.option("--small", is_flag=True, help="Stores 40 times smaller: a quick look.")
@click.option(
    "--redis-url",
    default="redis://127.0.0.1:6379/8",
    show_default=True,
    help="The demo's own Redis database; it must hold only ecosync's keys (it is flushed).",
)
@click.option("--port", default=8765, show_default=True, help="Simulator port (or a free one).")
@click.option("--budget-seconds", type=float, default=None, help="Budget of each sync run.")
@reports_errors
def demo(small: bool, redis_url: str, port: int, budget_seconds: float | None) -> None:
    """Sync, clear Redis, watch the sensor recover, sync again: nothing missed."""
    import dagster

    from ecosync_pipeline.lab.demo import COLUMNS, report_rows, run_demo

    # The demo's own lines tell the story; each run's full log is in `dagster dev`.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=dagster.BetaWarning)
    warnings.filterwarnings("ignore", category=dagster.PreviewWarning)

    root = Path.cwd()
    if not (root / "data" / "stores.yaml").exists():
        raise click.ClickException("run the demo from the project root (data/stores.yaml)")
    report = run_demo(
        root, small=small, redis_url=redis_url, port=port, budget_seconds=budget_seconds
    )
    click.echo("")
    click.echo(format_table(COLUMNS, report_rows(report)))
    missing = sum(r.missing for r in report.rows)
    duplicated = sum(r.duplicated for r in report.rows)
    click.echo(
        f"\n{report.runs} Dagster runs in {report.seconds:.0f} s; {missing} orders missing, "
        f"{duplicated} duplicated. See them all: DAGSTER_HOME=$PWD/data .venv/bin/dagster dev"
    )
    if missing or duplicated:
        raise SystemExit(1)
