"""What a benchmark runs against: a Redis database of its own, a database it creates itself.

A benchmark flushes Redis and writes orders, so it never touches data it did not make:

- Redis: one dedicated database number (``ECOSYNC_BENCH_REDIS_URL``, default db 10),
  claimed with a marker key. A database holding keys without that marker belongs to
  someone else and is refused; nothing there is read, flushed or written.
- Orders: a PostgreSQL database created for the run on the local server (through the
  admin URL ``ECOSYNC_BENCH_POSTGRES_URL``) and dropped afterwards, or a SQLite file in
  a temporary folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import redis

from ecosync_pipeline.errors import ConfigError, DatabaseUnavailable
from ecosync_pipeline.storage import redact

logger = logging.getLogger(__name__)

BENCH_REDIS_MARKER = "ecosync:bench-database"
DEFAULT_BENCH_REDIS_URL = "redis://127.0.0.1:6379/10"
DEFAULT_BENCH_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
Backend = Literal["postgresql", "sqlite"]


def bench_redis_url(environ: Mapping[str, str] | None = None) -> str:
    """The benchmarks' Redis URL: ECOSYNC_BENCH_REDIS_URL, else db 10 on localhost."""
    env = os.environ if environ is None else environ
    return env.get("ECOSYNC_BENCH_REDIS_URL") or DEFAULT_BENCH_REDIS_URL


def bench_postgres_url(environ: Mapping[str, str] | None = None) -> str:
    """The admin URL the benchmarks create their database with (ECOSYNC_BENCH_POSTGRES_URL)."""
    env = os.environ if environ is None else environ
    return env.get("ECOSYNC_BENCH_POSTGRES_URL") or DEFAULT_BENCH_POSTGRES_URL


@dataclass
class BenchRedis:
    """A claimed Redis database: the benchmark may flush it (the marker is put back)."""

    url: str
    client: redis.Redis
    marker: str

    def flush(self) -> None:
        """Empty this database only (FLUSHDB, never FLUSHALL) and keep the claim."""
        self.client.flushdb()
        self.client.set(self.marker, "1")


@contextmanager
def claimed_redis(url: str, marker: str = BENCH_REDIS_MARKER) -> Iterator[BenchRedis]:
    """Claim the Redis database at ``url`` for a benchmark; flushed again when it ends.

    Raises ConfigError when Redis cannot be reached, when the URL names no database
    number other than 0, or when the database holds keys but not ``marker``.
    """
    client = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
    where = redact(url)
    if db == 0:
        client.close()
        raise ConfigError(
            f"Redis {where} is database 0, the default every tool writes to; give the "
            "benchmark a dedicated database, e.g. --redis-url redis://127.0.0.1:6379/10"
        )
    try:
        claimed = bool(client.exists(marker))
        if not claimed and client.dbsize() > 0:
            raise ConfigError(
                f"Redis {where} holds keys that are not this benchmark's (no {marker} key); "
                "it is left untouched. Point --redis-url (or ECOSYNC_BENCH_REDIS_URL) at an "
                "empty database number."
            )
        client.set(marker, "1")
    except redis.RedisError as exc:
        client.close()
        raise ConfigError(
            f"Redis is not reachable at {where} ({exc}); start it or pass --redis-url"
        ) from exc
    except ConfigError:
        client.close()
        raise
    handle = BenchRedis(url=url, client=client, marker=marker)
    try:
        yield handle
    finally:
        try:
            handle.flush()
        except redis.RedisError as exc:  # cleanup must not hide the benchmark's own error
            logger.warning("Redis %s could not be emptied after the benchmark: %s", where, exc)
        client.close()


@contextmanager
def temporary_postgres(
    admin_url: str | None = None, *, prefix: str = "ecosync_bench"
) -> Iterator[str]:
    """A PostgreSQL database created for this benchmark, dropped when it ends; yields its URL.

    Its name is ``prefix`` and a random suffix, so a benchmark's databases are told apart.
    """
    admin = admin_url or bench_postgres_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"could not create the benchmark database on {redact(admin)} ({exc}); start "
            "PostgreSQL or set ECOSYNC_BENCH_POSTGRES_URL to an admin URL"
        ) from exc
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            logger.warning("benchmark database %s was not dropped: %s", name, exc)


@contextmanager
def temporary_folder(prefix: str = "ecosync-bench-") -> Iterator[Path]:
    """A temporary folder, removed with its content when the benchmark ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def bench_database(
    backend: Backend = "postgresql", *, folder: Path, admin_url: str | None = None
) -> Iterator[str]:
    """A fresh orders database URL: a temporary PostgreSQL database or a SQLite file."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    with temporary_postgres(admin_url) as url:
        yield url
