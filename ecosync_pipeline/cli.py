"""`ecosync ...`: a thin click layer over the core.

Every command catches EcosyncError, prints "ErrorName: message" and exits 1.
The ``ecosync`` program reads ``./.env`` first, as ``dagster`` does (the demo writes one);
a variable already set in the environment wins.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

import click
from dotenv import load_dotenv

from ecosync_pipeline.commands import db, positions, quota, reconcile, sync, webhooks


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """ecosync: EcoManager order sync with positions that survive the loss of Redis."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO; our own lines say what each command did.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


PLUGINS = "ecosync.commands"
"""Entry-point group of command plugins: the lab's commands join ``ecosync`` this way."""

for command in (
    positions.positions,
    sync.sync,
    reconcile.reconcile,
    reconcile.refresh,
    quota.quota,
    db.db,
    webhooks.webhooks,
):
    main.add_command(command)
for plugin in entry_points(group=PLUGINS):
    plugin.load()(main)


def run() -> None:
    """The ``ecosync`` program: ``./.env`` (variables already set win), then the commands."""
    load_dotenv(Path.cwd() / ".env", override=False)
    main()
