"""`ecosync quota`: each store's shared rate budget, used and left in every window."""

from __future__ import annotations

import json

import click

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings
from ecosync_pipeline.ecomanager.budget import Quota
from ecosync_pipeline.ratebudget import WINDOW_NAMES
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.tables import format_table

COLUMNS = ("store", "counted in", *WINDOW_NAMES, "left today")


def quota_table(quotas: list[Quota]) -> str:
    """One row per store: calls used of each window's limit, and the calls left today."""
    rows = [
        (
            q.store,
            q.mode,
            *(f"{q.window(n).used}/{q.window(n).limit}" for n in WINDOW_NAMES),
            f"{q.window('day').left:,}",
        )
        for q in quotas
    ]
    return format_table(COLUMNS, rows)


@click.command()
@click.option("--store", "only", multiple=True, help="Only these stores (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def quota(only: tuple[str, ...], as_json: bool) -> None:
    """Each store's rate budget: calls used and left per second, minute, hour and day.

    The budget is shared by every process that calls EcoManager for the store and
    counted in Redis (ECOSYNC_REDIS_URL); "local" means Redis did not answer.
    """
    # Only the stores file: the quota opens neither the database nor the positions.
    with Runtime(Settings.from_env()) as runtime:
        chosen = runtime.select(only)
        quotas = [runtime.budget(s).quota() for s in chosen]
    if as_json:
        click.echo(json.dumps([q.as_dict() for q in quotas], indent=2))
    else:
        click.echo(quota_table(quotas))
