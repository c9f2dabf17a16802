"""Session fixtures: the real Redis and PostgreSQL, and the simulator over real HTTP.

Nothing here touches data it did not create: Redis tests use one dedicated database
number, claimed with a marker key (a database holding other keys is refused), and
PostgreSQL tests use a database created for the session and dropped after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer, StoreSpec
from ecosync_pipeline_tests.helpers import World, make_world

TEST_REDIS_URL = os.environ.get("ECOSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_POSTGRES_ADMIN_URL = os.environ.get(
    "ECOSYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_MARKER = "ecosync:test-database"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-large",
        action="store_true",
        help="run the fault-injection suite in its larger form",
    )


def _claim_redis_db(client: redis.Redis) -> None:
    """Refuse a Redis database that holds keys we did not write."""
    if client.exists(REDIS_MARKER):
        return
    if client.dbsize() > 0:
        pytest.exit(
            f"Redis database {TEST_REDIS_URL} holds keys that are not ecosync's test data; "
            "the tests flush the database they use. Point ECOSYNC_TEST_REDIS_URL at an "
            "empty database number (e.g. redis://127.0.0.1:6379/14).",
            returncode=3,
        )
    client.set(REDIS_MARKER, "1")


@contextlib.contextmanager
def _only_session_on(redis_url: str) -> Iterator[None]:
    """Hold, for the whole session, a PostgreSQL advisory lock named after the Redis database.

    Two sessions on one database (say, two checkouts left at the default) flush each
    other's keys between a write and its assertion, and the marker cannot tell them
    apart: the second session is refused here, naming the first. The lock ends with its
    connection, so a killed session never leaves it behind.
    """
    digest = hashlib.sha256(f"ecosync tests on {redis_url}".encode()).digest()
    # Two keys of 31 bits: an int4 pg_locks shows as the same number (classid, objid).
    high, low = (int.from_bytes(digest[i : i + 4], "big") >> 1 for i in (0, 4))
    me = f"ecosync-tests pid {os.getpid()} in {os.getcwd()}"[:63]
    try:
        conn = psycopg.connect(
            TEST_POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5, application_name=me
        )
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {TEST_POSTGRES_ADMIN_URL} ({exc})", 3)
    with conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (high, low)).fetchone()
        if row != (True,):
            holder = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = %s AND l.objid = %s",
                (high, low),
            ).fetchone()
            pytest.exit(
                f"Redis database {redis_url} is in use by another test session "
                f"({holder[0] if holder else 'it has just ended'}); point "
                "ECOSYNC_TEST_REDIS_URL at a database of your own",
                returncode=3,
            )
        yield


@pytest.fixture(scope="session")
def redis_admin() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.exit(
            f"Redis is not reachable at {TEST_REDIS_URL} ({exc}); start it with "
            "scripts/services.sh or set ECOSYNC_TEST_REDIS_URL",
            returncode=3,
        )
    with _only_session_on(TEST_REDIS_URL):
        _claim_redis_db(client)
        yield client
    client.close()


@pytest.fixture
def redis_url(redis_admin: redis.Redis) -> Iterator[str]:
    """A Redis URL whose database is empty at the start of the test (ours to flush)."""
    redis_admin.flushdb()
    redis_admin.set(REDIS_MARKER, "1")
    try:
        yield TEST_REDIS_URL
    finally:
        redis_admin.flushdb()
        redis_admin.set(REDIS_MARKER, "1")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database created for this session (and dropped after it)."""
    name = f"ecosync_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(TEST_POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {TEST_POSTGRES_ADMIN_URL} ({exc}); start "
            "it with scripts/services.sh or set ECOSYNC_TEST_POSTGRES_URL",
            returncode=3,
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = TEST_POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(TEST_POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied (it is ours) before the test."""
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return postgres_database


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/ecosync.db"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on PostgreSQL and once on SQLite."""
    name = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimulatorServer]:
    """One EcoManager simulator served over real HTTP for the whole session."""
    with SimulatorServer(Simulator()) as server:
        yield server


@pytest.fixture
def simulator(sim_server: SimulatorServer) -> Iterator[Simulator]:
    """The session's simulator with no stores: each test configures its own (StoreSpec).

    ``simulator.store_url(id)``, ``simulator.as_store(id)`` and ``simulator.token(id)``
    give a client what it needs to reach a configured store.
    """
    sim_server.simulator.configure([])
    try:
        yield sim_server.simulator
    finally:
        sim_server.simulator.configure([])


@pytest.fixture
def specs() -> list[StoreSpec]:
    """The stores ``build`` configures by default: a test package or module overrides this."""
    return []


@pytest.fixture
def build_options() -> dict[str, Any]:
    """make_world options a test package sets for all its worlds (overridable like ``specs``)."""
    return {}


@pytest.fixture
def build(
    simulator: Simulator,
    specs: list[StoreSpec],
    build_options: dict[str, Any],
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., World]:
    """``build(specs=None, **options)``: make_world on this test's simulator and databases.

    Without ``specs`` it configures the ``specs`` fixture's stores; keyword options
    (database_url, redis_url, per_page, ...) override the test's own.
    """

    def build_world(chosen: list[StoreSpec] | None = None, **overrides: Any) -> World:
        options: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "tmp_path": tmp_path,
            "monkeypatch": monkeypatch,
            **build_options,
        }
        return make_world(simulator, chosen or specs, **{**options, **overrides})

    return build_world
