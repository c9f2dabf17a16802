"""`ecosync sync`: run the order sync from the terminal and print the result table."""

from __future__ import annotations

import click

from ecosync_pipeline.commands import reports_errors
from ecosync_pipeline.config import Settings
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.sync.engine import SyncResult
from ecosync_pipeline.tables import format_table

COLUMNS = ("store", "from", "to", "pages", "calls", "new", "updated", "source", "seconds", "ended")


def result_row(r: SyncResult) -> tuple[str, ...]:
    """One line of the result table."""
    ended = "budget" if r.stopped_by_budget else ("end" if r.reached_end else "-")
    return (
        r.store,
        str(r.from_page),
        str(r.to_page),
        str(r.pages_fetched),
        str(r.api_calls),
        str(r.orders_new),
        str(r.orders_updated),
        r.position_source,
        f"{r.seconds:.1f}",
        ended,
    )


@click.command("sync")
@click.option(
    "--store",
    "stores",
    multiple=True,
    help="Store identifier (repeatable); default: every configured store.",
)
@click.option(
    "--budget-seconds",
    type=float,
    default=None,
    help="Stop each store cleanly after this many seconds; the next run continues.",
)
@reports_errors
def sync(stores: tuple[str, ...], budget_seconds: float | None) -> None:
    """Sync orders of the configured stores from their verified positions."""
    runtime = Runtime.from_settings(Settings.from_env())
    try:
        wanted = list(stores) or [s.identifier for s in runtime.stores]
        rows: list[tuple[str, ...]] = []
        failures: list[str] = []
        for identifier in wanted:
            try:
                rows.append(result_row(runtime.sync(identifier, budget_seconds=budget_seconds)))
            except EcosyncError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
        if rows:
            click.echo(format_table(COLUMNS, rows))
        for line in failures:
            click.echo(line, err=True)
        if failures:
            raise SystemExit(1)
    finally:
        runtime.close()
