"""A migrated orders database per test, on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from ecosync_pipeline.storage import make_engine, migrate


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database at the latest schema (each backend in turn)."""
    eng = make_engine(database_url)
    try:
        migrate(eng)
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def fresh_engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database with no schema at all."""
    eng = make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """A migrated PostgreSQL engine, for what only PostgreSQL can show (plans, ALTERs)."""
    eng = make_engine(postgres_url)
    try:
        migrate(eng)
        yield eng
    finally:
        eng.dispose()
