"""`ecosync db upgrade|current|revision`: the orders database's schema migrations (Alembic)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from alembic import command

from ecosync_pipeline.commands.reporting import reports_errors
from ecosync_pipeline.config import Settings
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    redact,
)


@click.group()
def db() -> None:
    """The orders database's schema (ECOSYNC_DATABASE_URL)."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Revision to upgrade to.")
@reports_errors
def upgrade(revision: str) -> None:
    """Upgrade the orders database to the newest schema (or to --revision)."""
    with Runtime(Settings.from_env(), migrate=False) as runtime:
        before = current_revision(runtime.engine)
        after = migrate(runtime.engine, revision=revision)
        url = runtime.settings.database_url
    click.echo(f"orders database {redact(url)}: schema {before or 'empty'} -> {after}")


@db.command()
@reports_errors
def current() -> None:
    """Print the database's schema revision and the newest this ecosync knows."""
    with Runtime(Settings.from_env(), migrate=False) as runtime:
        revision = current_revision(runtime.engine)
        url = runtime.settings.database_url
    click.echo(f"orders database {redact(url)}: at {revision or 'empty'}, newest {head_revision()}")


@db.command()
@click.option("-m", "--message", required=True, help="What the revision changes.")
@reports_errors
def revision(message: str) -> None:
    """Write a new revision after the newest, generated from the change to schema.py."""
    head = head_revision()
    rev_id = f"{int(head) + 1:04d}"
    config = alembic_config()
    config.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    with tempfile.TemporaryDirectory() as scratch:
        # A scratch database at the newest schema, to compare schema.py with: not ours.
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            migrate(engine)
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    click.echo(f"revision {rev_id} written after {head}: review it (and run the tests)")
