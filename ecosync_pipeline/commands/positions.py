"""`ecosync positions status|restore`: the three layers of every store, and the restore."""

from __future__ import annotations

import json

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings
from ecosync_pipeline.positions.health import StatusReport, status_report
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.outcomes import RestoreReport
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisRead
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.tables import format_table

STATUS_COLUMNS = (
    "store",
    "redis page",
    "redis last id",
    "json page",
    "json last id",
    "db last id",
    "db orders",
    "status",
    "json status",
)
RESTORE_COLUMNS = (
    "store",
    "before redis",
    "before json",
    "before db",
    "after",
    "from",
    "api calls",
    "error",
)


def _page_and_id(position: RedisRead) -> tuple[str, str]:
    if position is UNAVAILABLE:
        return "unavailable", "-"
    if position is None:
        return "-", "-"
    assert isinstance(position, SyncPosition)
    last = position.target
    return str(position.last_page), "-" if last is None else str(last)


def _short(position: RedisRead) -> str:
    page, last = _page_and_id(position)
    return page if last == "-" else f"p{page} #{last}"


def status_table(report: StatusReport) -> str:
    """The per-store table and the summary lines of ``ecosync positions status``."""
    rows = []
    for s in report.stores:
        redis_page, redis_last = _page_and_id(s.redis if s.status != "unreachable" else UNAVAILABLE)
        json_page, json_last = _page_and_id(s.json)
        rows.append(
            (
                s.store,
                redis_page,
                redis_last,
                json_page,
                json_last,
                "-" if s.db_last_order_id is None else str(s.db_last_order_id),
                str(s.db_order_count),
                s.status,
                s.json_status,
            )
        )
    healthy = sum(1 for s in report.stores if s.status in ("healthy", "calculated"))
    lines = [
        format_table(STATUS_COLUMNS, rows),
        "",
        f"cache health: {report.cache_health:.0%} ({healthy}/{len(report.stores)} stores)",
        f"redis: {report.redis_state}"
        + (f" (event {report.loss.event_id})" if report.loss.event_id else ""),
        f"backup: {report.backup_location}",
    ]
    if report.backup_quarantined:
        lines.append(f"backup was unreadable and moved aside to {report.backup_quarantined}")
    return "\n".join(lines)


def restore_table(reports: list[RestoreReport]) -> str:
    """Before and after of every store, as ``ecosync positions restore`` prints it."""
    rows = [
        (
            r.store,
            _short(r.before.redis),
            _short(r.before.json),
            _short(r.before.database),
            _short(r.after),
            r.restored_from or "-",
            str(r.api_calls),
            r.error or "",
        )
        for r in reports
    ]
    return format_table(RESTORE_COLUMNS, rows)


@click.group("positions")
def positions() -> None:
    """Inspect and restore the sync positions (Redis, JSON backup, orders database)."""


@positions.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def status(as_json: bool) -> None:
    """Show what each layer holds for every store, its status and the cache health."""
    with Runtime.from_settings(Settings.from_env()) as runtime:
        report = status_report(runtime.chain)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(status_table(report))


@positions.command("restore")
@reports_errors
def restore() -> None:
    """Restore and verify every store's position in Redis and the backup; print before/after."""
    with Runtime.from_settings(Settings.from_env()) as runtime:
        reports = runtime.chain.restore_all(runtime.clients())
    click.echo(restore_table(reports))
    failed = [r.store for r in reports if r.error]
    if failed:
        click.echo(f"{len(failed)} store(s) not restored: {', '.join(failed)}", err=True)
        raise SystemExit(1)
