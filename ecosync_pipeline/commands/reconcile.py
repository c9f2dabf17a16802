"""`ecosync reconcile` and `ecosync refresh-statuses`: the mirror's repairs from the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.mirror import (
    FreshnessResult,
    ReconcileResult,
    reconcile_store,
    refresh_statuses,
)
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.tables import format_table

RECONCILE_COLUMNS = (
    "store",
    "ranges checked",
    "pages",
    "calls",
    "missing",
    "fetched",
    "flagged deleted",
    "updated",
    "sweep",
    "calls left today",
)
REFRESH_COLUMNS = (
    "store",
    "from id",
    "pages",
    "calls",
    "open before",
    "open after",
    "updated",
    "missing",
    "flagged deleted",
    "seconds",
)


def reconcile_row(r: ReconcileResult) -> tuple[str, ...]:
    """One line of the reconcile table."""
    c = r.counts
    sweep = (
        f"{r.sweep} complete" if r.sweep_complete else f"{r.sweep}: {r.sweep_pages} pages so far"
    )
    return (
        r.store,
        r.range_checked,
        str(c.pages),
        str(r.api_calls),
        str(c.missing),
        str(c.fetched),
        str(c.flagged_deleted),
        str(c.updated),
        sweep if r.sweep else "-",
        str(r.calls_left_today),
    )


def reconcile_json(r: ReconcileResult) -> dict[str, Any]:
    return {
        "store": r.store,
        **r.counts.as_dict(),
        "api_calls": r.api_calls,
        "sweep": r.sweep,
        "sweep_complete": r.sweep_complete,
        "sweep_pages": r.sweep_pages,
        "calls_left_today": r.calls_left_today,
        "seconds": r.seconds,
    }


def refresh_row(r: FreshnessResult) -> tuple[str, ...]:
    """One line of the refresh-statuses table."""
    c = r.counts
    return (
        r.store,
        "-" if r.oldest_open_id is None else str(r.oldest_open_id),
        str(c.pages),
        str(r.api_calls),
        str(r.open_before),
        str(r.open_after),
        str(c.updated),
        str(c.missing),
        str(c.flagged_deleted),
        f"{r.seconds:.1f}",
    )


def refresh_json(r: FreshnessResult) -> dict[str, Any]:
    return {
        "store": r.store,
        "oldest_open_id": r.oldest_open_id,
        "open_before": r.open_before,
        "open_after": r.open_after,
        **r.counts.as_dict(),
        "api_calls": r.api_calls,
        "seconds": r.seconds,
    }


def _each_store(
    stores: Sequence[str],
    as_json: bool,
    run: Callable[[Runtime, Store], Any],
    row: Callable[[Any], tuple[str, ...]],
    to_json: Callable[[Any], dict[str, Any]],
    columns: Sequence[str],
) -> None:
    """Run ``run`` for each store, print the table (or JSON); exit 1 if a store failed."""
    runtime = Runtime.from_settings(Settings.from_env())
    try:
        # Each named store is looked up in its own turn: an unknown one fails alone.
        wanted = list(stores) or [s.identifier for s in runtime.stores]
        results: list[Any] = []
        failures: list[str] = []
        for identifier in wanted:
            try:
                results.append(run(runtime, runtime.store(identifier)))
            except EcosyncError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
        if as_json:
            click.echo(json.dumps([to_json(r) for r in results], indent=2))
        elif results:
            click.echo(format_table(columns, [row(r) for r in results]))
        for line in failures:
            click.echo(line, err=True)
        if failures:
            raise SystemExit(1)
    finally:
        runtime.close()


STORE_OPTION = click.option(
    "--store",
    "stores",
    multiple=True,
    help="Store identifier (repeatable); default: every configured store.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")


@click.command("reconcile")
@STORE_OPTION
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    default=None,
    help="API calls each store may spend in this run (default: what is left of its "
    "reconcile_calls_per_day). The sweep carries on from there next time.",
)
@JSON_OPTION
@reports_errors
def reconcile(stores: tuple[str, ...], max_calls: int | None, as_json: bool) -> None:
    """Compare each store's ids with EcoManager's by range, newest first, and repair.

    Missing orders are fetched, orders EcoManager no longer serves are flagged deleted,
    changed ones updated; the sweep continues from run to run until page 1.
    """

    def run(runtime: Runtime, store: Store) -> ReconcileResult:
        with runtime.client(store) as client:
            return reconcile_store(store, client=client, engine=runtime.engine, max_calls=max_calls)

    _each_store(stores, as_json, run, reconcile_row, reconcile_json, RECONCILE_COLUMNS)


@click.command("refresh-statuses")
@STORE_OPTION
@click.option("--max-calls", type=click.IntRange(min=1), default=None, help="Stop after this many.")
@JSON_OPTION
@reports_errors
def refresh(stores: tuple[str, ...], max_calls: int | None, as_json: bool) -> None:
    """Re-read each store's open orders (not in a final state) until they are final."""

    def run(runtime: Runtime, store: Store) -> FreshnessResult:
        with runtime.client(store) as client:
            return refresh_statuses(
                store, client=client, engine=runtime.engine, max_calls=max_calls
            )

    _each_store(stores, as_json, run, refresh_row, refresh_json, REFRESH_COLUMNS)
