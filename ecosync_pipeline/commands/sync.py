"""`ecosync sync`: run the order sync from the terminal and print the result table.

Each store is synced on its own: a store that fails is listed with its reason in a
failures table and the others still run; the command exits 1 when any failed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.redact import Redactor, url_secrets
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.sync.batch import MAX_WORKERS
from ecosync_pipeline.sync.engine import SyncResult
from ecosync_pipeline.tables import format_table

COLUMNS = ("store", "from", "to", "pages", "calls", "new", "updated", "source", "seconds", "ended")
FAILURE_COLUMNS = ("store", "error", "reason")
DEFAULT_BUDGET_SECONDS = 600.0
"""A sync stops cleanly after this long per store unless told otherwise; the next run
continues, so no run can spin for ever against a server that never ends."""


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


def _known_token(store: Store) -> str:
    """The store's token as it reads now (its variable or file), or "" when it cannot."""
    try:
        return store.token()
    except EcosyncError:
        return ""


def secrets_redactor(runtime: Runtime) -> Redactor:
    """A Redactor for every secret this process knows: the stores' tokens and URL passwords."""
    settings = runtime.settings
    secrets = [_known_token(s) for s in runtime.stores]
    for url in (settings.database_url, settings.redis_url, settings.backup_path):
        secrets += url_secrets(url)
    return Redactor(secrets)


def sync_one(runtime: Runtime, identifier: str, budget: float | None) -> SyncResult | Exception:
    """Sync one store; its failure, whatever it is, is returned instead of raised."""
    try:
        return runtime.sync(identifier, budget_seconds=budget)
    except EcosyncError as exc:
        return exc
    # Every failure is converted to our errors where it arises; a stray one still must
    # not stop the other stores (its traceback is not printed: it may quote a secret).
    except Exception as exc:
        return exc


@click.command("sync")
@click.option(
    "--store",
    "stores",
    multiple=True,
    help="Store identifier (repeatable); default: every configured store.",
)
@click.option(
    "--budget-seconds",
    type=click.FloatRange(min=0),
    default=DEFAULT_BUDGET_SECONDS,
    show_default=True,
    help="Stop each store cleanly after this many seconds (0: no limit); the next run continues.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=1,
    show_default=True,
    help="Stores synced at the same time (threads), as a Dagster run of a batch does.",
)
@reports_errors
def sync(stores: tuple[str, ...], budget_seconds: float, workers: int) -> None:
    """Sync orders of the configured stores from their verified positions."""
    runtime = Runtime.from_settings(Settings.from_env())
    try:
        redact = secrets_redactor(runtime)
        # Each named store is looked up in its own turn: an unknown one fails alone.
        wanted = list(stores) or [s.identifier for s in runtime.stores]
        rows: list[tuple[str, ...]] = []
        failures: list[tuple[str, str, str]] = []
        notes: list[str] = []
        # Each store under its own lock and client: threads only overlap their waiting.
        # The stores' backup writes land together, about once a second (json_layer).
        with (
            runtime.chain.coalescing(),
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecosync-store") as pool,
        ):
            outcomes = list(
                pool.map(lambda store: sync_one(runtime, store, budget_seconds or None), wanted)
            )
        for identifier, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, SyncResult):
                rows.append(result_row(outcome))
                notes += outcome.set_aside
            else:
                reason = redact(str(outcome)) or "(no message)"
                failures.append((identifier, type(outcome).__name__, reason))
        if rows:
            click.echo(format_table(COLUMNS, rows))
        for line in notes:
            click.echo(redact(line), err=True)
        if failures:
            click.echo(
                f"\n{len(failures)} of {len(wanted)} stores failed; the others were synced:",
                err=True,
            )
            click.echo(format_table(FAILURE_COLUMNS, failures), err=True)
            raise SystemExit(1)
    finally:
        runtime.close()
