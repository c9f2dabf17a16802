"""storage/dialect.py: the one module where PostgreSQL and SQLite differ."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage import dialect
from ecosync_pipeline.storage.schema import sync_fences


def test_an_unsupported_backend_is_refused_naming_it() -> None:
    with pytest.raises(StorageError, match="the mysql backend is not supported"):
        dialect.backend(mysql.dialect())  # type: ignore[no-untyped-call]


def test_row_locks_are_taken_on_postgresql_only() -> None:
    stmt = select(sync_fences.c.token)
    on_pg = dialect.for_update(stmt, postgresql.dialect(), skip_locked=True)  # type: ignore[no-untyped-call]
    on_sqlite = dialect.for_update(stmt, sqlite.dialect())  # type: ignore[no-untyped-call]
    assert "FOR UPDATE SKIP LOCKED" in str(on_pg.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    assert "FOR UPDATE" not in str(on_sqlite.compile(dialect=sqlite.dialect()))  # type: ignore[no-untyped-call]


def test_the_insert_with_on_conflict_is_the_backends_own() -> None:
    assert dialect.insert(postgresql.dialect()) is postgresql.insert  # type: ignore[no-untyped-call]
    assert dialect.insert(sqlite.dialect()) is sqlite.insert  # type: ignore[no-untyped-call]
