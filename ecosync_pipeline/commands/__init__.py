"""The CLI's command groups, one module each; cli.py only assembles them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ecosync_pipeline.errors import EcosyncError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(func: F) -> F:
    """Turn an EcosyncError into 'ErrorName: message' on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EcosyncError as exc:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def register(group: click.Group) -> None:
    """Add every command group to the top-level ``ecosync`` group."""
    from ecosync_pipeline.commands import (
        bench,
        db,
        demo,
        positions,
        quota,
        reconcile,
        simulator,
        sync,
        webhooks,
    )

    group.add_command(simulator.simulator)
    group.add_command(positions.positions)
    group.add_command(sync.sync)
    group.add_command(reconcile.reconcile)
    group.add_command(reconcile.refresh)
    group.add_command(quota.quota)
    group.add_command(bench.bench)
    group.add_command(demo.demo)
    group.add_command(db.db)
    group.add_command(webhooks.webhooks)
