"""Schema migrations with Alembic: every database, new or years old, reaches the current schema.

The revisions live in ``versions/``, one file each, numbered ``0001``, ``0002``, ... in
one line of history (one head). Each revision's DDL is frozen in its file (it does not
read ``schema.py``), so what ``0001`` creates never changes when the current schema
does; a test compares a database upgraded from scratch with ``schema.metadata``.

``migrate`` upgrades in one transaction, under a lock, so two processes starting at once
(the Dagster daemon and the webserver, say) cannot apply a revision twice. The alembic
CLI (``alembic upgrade head`` with the project's ``alembic.ini``) and ``ecosync db
upgrade`` run the same ``env.py``, so they take the same lock.

Databases made by ecosync's first migration framework (a ``schema_version`` table at
version 1 or 2) are stamped with the matching revision and carried on from there.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ecosync_pipeline.errors import DatabaseUnavailable, StorageError
from ecosync_pipeline.storage import dialect
from ecosync_pipeline.storage.database import describe_error, redact

logger = logging.getLogger(__name__)

MIGRATION_LOCK = "ecosync:migrate"
SCRIPT_LOCATION = Path(__file__).parent
LEGACY_TABLE = "schema_version"
LEGACY_REVISIONS = {1: "0001", 2: "0002"}
"""The revision each version of the first migration framework corresponds to."""


def alembic_config(*, version_locations: tuple[Path, ...] = ()) -> Config:
    """The project's Alembic configuration (``alembic.ini`` says the same for the CLI).

    ``version_locations`` adds folders of revisions after the project's own.
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    folders = (SCRIPT_LOCATION / "versions", *version_locations)
    config.set_main_option("version_locations", ":".join(str(f) for f in folders))
    return config


@functools.lru_cache(maxsize=8)
def _script(locations: str) -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", locations)
    return ScriptDirectory.from_config(config)


def script_directory(config: Config | None = None) -> ScriptDirectory:
    """The revisions of ``config`` (the project's own by default), read once per process."""
    cfg = config or alembic_config()
    return _script(cfg.get_main_option("version_locations") or "")


def head_revision(config: Config | None = None) -> str:
    """The newest revision; StorageError when the history has more than one head."""
    script = script_directory(config)
    heads = script.get_heads()
    if len(heads) != 1:
        raise StorageError(
            f"the schema migrations have {len(heads)} heads ({', '.join(sorted(heads))}); "
            "give the newer revision the other as its down_revision, so history is one line"
        )
    return heads[0]


def current_revision(bind: Engine | Connection) -> str | None:
    """The revision the database is at (None for an empty one), read without locking."""
    try:
        # Opening and closing the connection are in the try too: a connection dropped
        # between them fails the first query or the rollback at close.
        if isinstance(bind, Engine):
            with bind.connect() as conn:
                return _read_revision(conn.execution_options(**dialect.READ_ONLY))
        return _read_revision(bind)
    except SQLAlchemyError as exc:
        lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
        raise (DatabaseUnavailable if lost else StorageError)(
            f"orders database {redact(bind.engine.url)}: reading the schema revision failed "
            f"({describe_error(exc)}); check the database"
        ) from exc


def _read_revision(conn: Connection) -> str | None:
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        return _legacy_revision(conn)
    return revision


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision (a read: no lock taken)."""
    return current_revision(engine) == head_revision()


def upgrade_if_behind(engine: Engine) -> Engine:
    """Migrate the database if it is behind; return the engine.

    A read first: migrating takes a write lock, and every run opens the database.
    """
    if not is_current(engine):
        migrate(engine)
    return engine


def prepare(conn: Connection) -> None:
    """Take the migration lock and adopt a database of the first migration framework.

    Runs inside the upgrade's transaction: on PostgreSQL a transaction-scoped advisory
    lock serializes migrators, on SQLite the write lock taken at BEGIN does.
    """
    dialect.serialize(conn, MIGRATION_LOCK)
    context = MigrationContext.configure(conn)
    if context.get_current_revision() is None:
        legacy = _legacy_revision(conn)
        if legacy is not None:
            logger.info(
                "orders database %s: adopting schema version as revision %s",
                redact(conn.engine.url),
                legacy,
            )
            context.stamp(script_directory(), legacy)


def _legacy_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(LEGACY_TABLE):
        return None
    version = conn.execute(text(f"SELECT max(version) FROM {LEGACY_TABLE}")).scalar()
    return LEGACY_REVISIONS.get(int(version or 0))


def migrate(engine: Engine, *, revision: str = "head", config: Config | None = None) -> str:
    """Upgrade the database to ``revision`` (the newest by default) in one transaction.

    Idempotent and safe when several processes call it at once. Returns the revision the
    database is at. Raises StorageError if the database is newer than this code, or if a
    revision fails (the transaction is rolled back, the database is unchanged).
    """
    cfg = config or alembic_config()
    script = script_directory(cfg)
    target = head_revision(cfg) if revision == "head" else revision
    where = redact(engine.url)
    applied: list[str] = []
    cfg.attributes["applied"] = applied
    pending: list[str] = []
    try:
        with engine.begin() as conn:
            prepare(conn)
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and not _known(script, current):
                raise StorageError(
                    f"orders database {where} is at schema revision {current}, newer than "
                    f"this ecosync knows ({target}); upgrade ecosync on this machine before "
                    "using it"
                )
            pending = [r.revision for r in script.iterate_revisions(target, current or "base")]
            pending.reverse()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
    except SQLAlchemyError as exc:
        failed = pending[len(applied)] if len(applied) < len(pending) else target
        doc = script.get_revision(failed).doc if _known(script, failed) else ""
        raise StorageError(
            f"orders database {where}: migration {failed} ({doc}) failed "
            f"({describe_error(exc)}); it was rolled back, so the database is unchanged. "
            "Fix the cause and start again"
        ) from exc
    finally:
        cfg.attributes.pop("connection", None)
    for rev in applied:
        logger.info("orders database %s: applied migration %s", where, rev)
    return target


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False
