"""`ecosync ...`: a thin click layer over the core.

Every command catches EcosyncError, prints "ErrorName: message" and exits 1.
"""

from __future__ import annotations

import logging

import click

from ecosync_pipeline.commands import register


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """ecosync: EcoManager order sync with positions that survive the loss of Redis."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


register(main)
