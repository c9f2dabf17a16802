"""One sync run per store: a lock that the operating system or the server frees on a crash.

PostgreSQL: a session advisory lock on a connection held for the whole run; when the
process dies its session ends and the server drops the lock. SQLite: an OS file lock
next to the database file, which the kernel drops when the process dies. Either way a
second run fails at once with StoreLocked, naming the run that holds the store (recorded
in ``sync_fences.holder``), instead of waiting or syncing twice.

The reconciliation and the status refresh never take the sync's lock: every write goes
through the merge rule (merge.py), which keeps concurrent writers from undoing each
other, so they work beside a sync, one page transaction at a time, and a sync waits at
most for one of their pages. Each has a lock of its own (``repair_lock``), so two
reconciliations of a store never run at once.

A lock can still be lost while a run holds it (its PostgreSQL connection is terminated,
so the server frees it and another run takes the store). So the lock is fenced: taking
it raises the store's token in ``sync_fences``; the run checks, in each page's write
transaction, that the token is still its own (``StoreLease.verify``) and, before each
position write, that its lock is still held (``StoreLease.check``). A run that lost the
lock raises StoreLockLost there and stops, so two runs never interleave their writes.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import filelock
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.errors import StorageError, StoreLocked, StoreLockLost
from ecosync_pipeline.storage import dialect
from ecosync_pipeline.storage.database import describe_error, redact
from ecosync_pipeline.storage.dialect import advisory_key
from ecosync_pipeline.storage.schema import sync_fences

logger = logging.getLogger(__name__)


def store_lock_key(store: StoreId) -> int:
    """The advisory lock key of a store's sync."""
    return advisory_key(f"ecosync:{store}")


def describe_holder(what: str, detail: str | None = None) -> str:
    """This process as the holder of a lock: what it runs, its pid and host, since when."""
    now = datetime.now(timezone.utc)
    about = f", {detail}" if detail else ""
    return (
        f"{what} in process {os.getpid()} on {socket.gethostname()} since "
        f"{now:%Y-%m-%d %H:%M:%S} UTC{about}"
    )[:200]


class StoreLease:
    """A held store lock: its fencing token, and the checks that it is still this run's."""

    def __init__(self, engine: Engine, store: StoreId, token: int, conn: Connection | None) -> None:
        self.engine = engine
        self.store = store
        self.token = token
        self._conn = conn  # PostgreSQL: the session holding the advisory lock

    def verify(self, conn: Connection) -> None:
        """In a write transaction: raise StoreLockLost unless the token is still ours.

        On PostgreSQL the token's row stays locked until the transaction ends, so a run
        taking the store waits for this page's commit and is seen by the next one.
        """
        stmt = dialect.for_update(
            select(sync_fences.c.token).where(sync_fences.c.store == self.store), conn
        )
        try:
            current = conn.execute(stmt).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"store {self.store}: reading the sync lock's token failed "
                f"({describe_error(exc)}); check the database"
            ) from exc
        if current != self.token:
            raise StoreLockLost(
                self.store,
                f"another run took the store: the lock's token is {current}, this run's "
                f"{self.token}",
            )

    def check(self) -> None:
        """Before a position write: raise StoreLockLost unless the lock is still held."""
        if self._conn is not None:
            key = store_lock_key(self.store)
            try:
                halves = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
                count = self._conn.exec_driver_sql(_HELD_SQL, halves).scalar()
            except SQLAlchemyError as exc:
                raise StoreLockLost(
                    self.store, f"its database session ended ({describe_error(exc)})"
                ) from exc
            if not count:
                raise StoreLockLost(self.store, "its database session no longer holds it")
            return  # held by this session: no other run can have the store
        with self.engine.connect() as conn:
            self.verify(conn)


_HELD_SQL = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s "
    "AND objsubid = 1"
)
"""Whether this session holds the advisory lock of a bigint key (split high, low)."""


def _take_token(engine: Engine, store: StoreId, holder: str) -> int:
    """Raise the store's fencing token and return it: this run's from now on."""
    insert = dialect.insert(engine)
    now = datetime.now(timezone.utc)
    stmt = insert(sync_fences).values(store=store, token=1, taken_at=now, holder=holder)
    stmt = stmt.on_conflict_do_update(
        index_elements=[sync_fences.c.store],
        set_={"token": sync_fences.c.token + 1, "taken_at": now, "holder": holder},
    ).returning(sync_fences.c.token)
    try:
        with engine.begin() as conn:
            return int(conn.execute(stmt).scalar_one())
    except SQLAlchemyError as exc:
        raise StorageError(
            f"store {store}: raising the sync lock's token failed ({describe_error(exc)}); "
            "check the database"
        ) from exc


def _holder(engine: Engine, store: StoreId) -> str | None:
    """Who holds the store's sync lock, as it recorded itself (None when unknown)."""
    stmt = select(sync_fences.c.holder).where(sync_fences.c.store == store)
    try:
        with engine.connect() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
    except SQLAlchemyError:
        return None
    return None if value is None else str(value)


@contextmanager
def store_lock(
    engine: Engine, store: StoreId, *, lock_dir: Path | None = None, holder: str | None = None
) -> Iterator[StoreLease]:
    """Hold the store's sync lock for the ``with`` block; raise StoreLocked at once if taken.

    Yields the StoreLease whose checks tell the run it still holds the store.
    ``lock_dir`` (SQLite only) is where the lock file goes; by default the database
    file's folder. ``holder`` says more about this run (a Dagster run id, say) to the
    run refused beside it.
    """
    me = describe_holder("a sync", holder)
    try:
        with _exclusive(engine, store, f"ecosync:{store}", f"{store}.lock", lock_dir) as conn:
            yield StoreLease(engine, store, _take_token(engine, store, me), conn)
    except _Taken:
        raise StoreLocked(store, _holder(engine, store)) from None


@contextmanager
def repair_lock(
    engine: Engine, store: StoreId, what: str, *, lock_dir: Path | None = None
) -> Iterator[None]:
    """One ``what`` ("reconciliation", "status refresh") of a store at a time, beside its sync.

    Raises StoreLocked at once when another one holds it; the sync's lock is not taken.
    """
    slug = what.replace(" ", "-")
    try:
        with _exclusive(engine, store, f"ecosync:{slug}:{store}", f"{store}.{slug}.lock", lock_dir):
            yield
    except _Taken:
        raise StoreLocked(store, what=what) from None


class _Taken(Exception):
    """The lock is held by another run."""


@contextmanager
def _exclusive(
    engine: Engine, store: StoreId, key_name: str, file_name: str, lock_dir: Path | None
) -> Iterator[Connection | None]:
    """An advisory lock (PostgreSQL, yielding its session) or a file lock (SQLite)."""
    if dialect.is_postgresql(engine):
        with _advisory_lock(engine, store, advisory_key(key_name)) as conn:
            yield conn
    else:
        with _file_lock(engine, store, lock_dir, file_name):
            yield None


@contextmanager
def _advisory_lock(engine: Engine, store: StoreId, key: int) -> Iterator[Connection]:
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
            raise _Taken()
        logger.debug("store %s: sync lock taken (advisory key %d)", store, key)
        try:
            yield conn
        finally:
            _advisory_unlock(conn, store, key)
    finally:
        conn.close()


def _advisory_unlock(conn: Connection, store: StoreId, key: int) -> None:
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
def _file_lock(engine: Engine, store: StoreId, lock_dir: Path | None, name: str) -> Iterator[None]:
    if lock_dir is None:
        database = dialect.sqlite_file(engine)
        if database is None:
            raise StorageError(
                f"store {store}: the SQLite database has no file, so there is "
                "nowhere to put the sync lock; pass lock_dir"
            )
        lock_dir = database.parent
    path = lock_dir / name
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path, timeout=0)
        lock.acquire()
    except filelock.Timeout:
        raise _Taken() from None
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
