"""Alembic's entry point: runs the revisions on the connection ``migrate`` hands over, or,
from the alembic CLI, on ECOSYNC_DATABASE_URL (or ``sqlalchemy.url``) under the same lock."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import JSON
from sqlalchemy.engine import Connection

from ecosync_pipeline.config import Settings
from ecosync_pipeline.storage.database import make_engine
from ecosync_pipeline.storage.migrations import prepare
from ecosync_pipeline.storage.schema import Money, UtcDateTime, metadata

config = context.config


def _record(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Note each applied revision, so a failure can name the one that failed."""
    applied = config.attributes.get("applied")
    if applied is not None and step.is_upgrade:
        applied.append(step.up_revision_id)


def _render_type(type_: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes our column types as ``schema.X()``, importable in a revision."""
    if type_ != "type" or not isinstance(obj, (UtcDateTime, Money, JSON)):
        return False
    autogen.imports.add("from ecosync_pipeline.storage import schema")
    return "schema.json_type()" if isinstance(obj, JSON) else f"schema.{type(obj).__name__}()"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: autogenerate writes batch operations.
        render_as_batch=True,
        on_version_apply=_record,
        render_item=_render_type,
    )
    with context.begin_transaction():
        context.run_migrations()


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def main() -> None:
    """Run the migrations in the mode Alembic asks for."""
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    if context.is_offline_mode():
        context.configure(url=_database_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_database_url())
    try:
        with engine.begin() as connection:
            prepare(connection)
            _run(connection)
    finally:
        engine.dispose()


main()
