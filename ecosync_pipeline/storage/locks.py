"""One sync run per store: a lock that the operating system or the server frees on a crash.

PostgreSQL: a session advisory lock on a connection held for the whole run; when the
process dies its session ends and the server drops the lock. SQLite: an OS file lock
next to the database file, which the kernel drops when the process dies. Either way a
second run fails at once with StoreLocked instead of waiting or syncing twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import validate_store_identifier
from ecosync_pipeline.errors import StorageError, StoreLocked
from ecosync_pipeline.storage.database import describe_error, redact, sqlite_path

logger = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from ``name``.

    Python's hash() changes between processes; a digest does not, so every process
    (and every release) computes the same key for the same store.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def store_lock_key(store: str) -> int:
    """The advisory lock key of a store's sync."""
    return advisory_key(f"ecosync:{store}")


@contextmanager
def store_lock(engine: Engine, store: str, *, lock_dir: Path | None = None) -> Iterator[None]:
    """Hold the store's sync lock for the ``with`` block; raise StoreLocked at once if taken.

    ``lock_dir`` (SQLite only) is where the lock file goes; by default the database
    file's folder.
    """
    validate_store_identifier(store)
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, store):
            yield
    elif engine.dialect.name == "sqlite":
        with _file_lock(engine, store, lock_dir):
            yield
    else:
        raise StorageError(
            f"store {store}: no store lock for the {engine.dialect.name} "
            "backend; use PostgreSQL or SQLite"
        )


@contextmanager
def _advisory_lock(engine: Engine, store: str) -> Iterator[None]:
    key = store_lock_key(store)
    where = redact(engine.url)
    try:
        # Autocommit: the lock belongs to the session, and holding a transaction open for
        # the whole run would keep vacuum from cleaning up behind it.
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as exc:
        raise StorageError(
            f"store {store}: cannot open a connection to {where} for the "
            f"sync lock ({describe_error(exc)}); check the database"
        ) from exc
    try:
        try:
            acquired = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
        except SQLAlchemyError as exc:
            raise StorageError(
                f"store {store}: taking the sync lock on {where} failed "
                f"({describe_error(exc)}); check the database"
            ) from exc
        if not acquired:
            raise StoreLocked(store)
        logger.debug("store %s: sync lock taken (advisory key %d)", store, key)
        try:
            yield
        finally:
            _advisory_unlock(conn, store, key)
    finally:
        conn.close()


def _advisory_unlock(conn: Connection, store: str, key: int) -> None:
    try:
        released = bool(conn.execute(select(func.pg_advisory_unlock(key))).scalar())
    except SQLAlchemyError as exc:
        released = False
        logger.warning("store %s: releasing the sync lock failed (%s)", store, describe_error(exc))
    if not released:
        # Never hand a connection that may still hold the lock back to the pool: closing
        # its session is what releases the lock for sure.
        conn.invalidate()
    else:
        logger.debug("store %s: sync lock released", store)


@contextmanager
def _file_lock(engine: Engine, store: str, lock_dir: Path | None) -> Iterator[None]:
    if lock_dir is None:
        database = sqlite_path(engine)
        if database is None:
            raise StorageError(
                f"store {store}: the SQLite database has no file, so there is "
                "nowhere to put the sync lock; pass lock_dir"
            )
        lock_dir = database.parent
    path = lock_dir / f"{store}.lock"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path, timeout=0)
        lock.acquire()
    except filelock.Timeout:
        raise StoreLocked(store) from None
    except OSError as exc:
        raise StorageError(
            f"store {store}: cannot take the sync lock file {path} "
            f"({exc.strerror}); check that its folder is writable"
        ) from exc
    logger.debug("store %s: sync lock taken (%s)", store, path)
    try:
        yield
    finally:
        lock.release()
        logger.debug("store %s: sync lock released", store)
