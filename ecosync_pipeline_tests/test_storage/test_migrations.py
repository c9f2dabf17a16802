"""Migrations (Alembic): a new database gets the current schema, an old one keeps its data."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine

from ecosync_pipeline.cli import main
from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage import (
    alembic_config,
    current_revision,
    ensure_store,
    head_revision,
    make_engine,
    metadata,
    migrate,
    orders_after,
    upsert_orders,
)
from ecosync_pipeline.storage.migrations import script_directory
from ecosync_pipeline.storage.schema import ORDERS_SEEN_INDEX, ORDERS_UNIQUE, webhook_inbox
from ecosync_pipeline.storage.schema import orders as orders_table
from ecosync_pipeline.storage.store_state import read_frontiers
from ecosync_pipeline_tests.test_storage.factories import make_page

ROOT = Path(__file__).resolve().parents[2]
HEAD = head_revision()
BOOKKEEPING = "alembic_version"


V1_COLUMNS = (
    "store",
    "order_id",
    "reference",
    "order_state",
    "total",
    "items",
    "created_at",
    "updated_at",
    "first_seen_at",
    "last_seen_at",
)
"""Columns every revision has: what an old release wrote, and what it read back."""


def _write_old(conn: Any, store: str, page: Any) -> None:
    """Orders written as a release at an older revision writes them (its columns only)."""
    seen = datetime.now(timezone.utc)
    rows = [
        {
            "store": store,
            "order_id": o.id,
            "reference": o.reference,
            "order_state": o.order_state_name,
            "total": o.total,
            "items": [dict(i) for i in o.items],
            "created_at": o.created_at,
            "updated_at": o.updated_at,
            "first_seen_at": seen,
            "last_seen_at": seen,
        }
        for o in page
    ]
    conn.execute(orders_table.insert(), rows)


def _read_old(engine: Engine, store: str) -> list[dict[str, Any]]:
    """A store's orders, the columns every revision has, by order id."""
    stmt = (
        select(*(orders_table.c[c] for c in V1_COLUMNS))
        .where(orders_table.c.store == store)
        .order_by(orders_table.c.order_id)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _revision_file(folder: Path, rev: str, parent: str, body: str, doc: str) -> None:
    """A synthetic later release: one revision file after ``parent``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v{rev}_test.py").write_text(
        f'''"""{doc}"""
from alembic import op
from sqlalchemy import text

revision = "{rev}"
down_revision = "{parent}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''
    )


def _shape(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, nullable), unique constraints and indexes, as reflected."""
    insp = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {BOOKKEEPING}):
        shape[table] = {
            "columns": sorted((c["name"], bool(c["nullable"])) for c in insp.get_columns(table)),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]))
                for i in insp.get_indexes(table)
                # PostgreSQL reports a unique constraint's index too.
                if not i.get("duplicates_constraint")
            ),
            "pk": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
        }
    return shape


def _model_shape() -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        shape[table.name] = {
            "columns": sorted((c.name, bool(c.nullable)) for c in table.columns),
            "unique": sorted(
                (str(u.name), tuple(c.name for c in u.columns))
                for u in table.constraints
                if u.__visit_name__ == "unique_constraint"
            ),
            "indexes": sorted(
                (str(i.name), tuple(c.name for c in i.columns)) for i in table.indexes
            ),
            "pk": tuple(c.name for c in table.primary_key.columns),
            "fks": sorted(
                (tuple(fk.parent.name for fk in c.elements), c.referred_table.name)
                for c in table.foreign_key_constraints
            ),
        }
    return shape


def test_migrate_creates_the_current_schema_on_an_empty_database(fresh_engine: Engine) -> None:
    assert current_revision(fresh_engine) is None
    assert migrate(fresh_engine) == HEAD
    assert current_revision(fresh_engine) == HEAD
    assert _shape(fresh_engine) == _model_shape()
    assert (ORDERS_UNIQUE, ("store", "order_id")) in _shape(fresh_engine)["orders"]["unique"]


def test_table_definitions_and_migrations_agree(fresh_engine: Engine) -> None:
    """Alembic's own comparison: a column, index or type in schema.py with no revision
    (or a revision with no counterpart in schema.py) fails here."""
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_a_column_missing_from_the_migrations_is_detected(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE orders ADD COLUMN stray TEXT"))
    with fresh_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d[0] for d in diff] == ["remove_column"]
    assert diff[0][3].name == "stray"


def test_migrate_twice_is_a_no_op(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    migrate(fresh_engine)
    with fresh_engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version_num FROM {BOOKKEEPING}")).scalars().all()
    assert versions == [HEAD]


def test_database_at_0001_with_data_migrates_to_latest_and_later_without_loss(
    fresh_engine: Engine, tmp_path: Path
) -> None:
    assert migrate(fresh_engine, revision="0001") == "0001"
    assert ORDERS_SEEN_INDEX not in {i["name"] for i in inspect(fresh_engine).get_indexes("orders")}
    with fresh_engine.begin() as conn:
        ensure_store(conn, "NATUR", "Natur")
        ensure_store(conn, "PURNA", "Purna")
        _write_old(conn, "NATUR", make_page(181_590, 40))
        _write_old(conn, "PURNA", make_page(9_490, 20, step=3, state="Livré"))
    before = {s: _read_old(fresh_engine, s) for s in ("NATUR", "PURNA")}

    assert migrate(fresh_engine) == HEAD
    assert ORDERS_SEEN_INDEX in {i["name"] for i in inspect(fresh_engine).get_indexes("orders")}
    assert {s: _read_old(fresh_engine, s) for s in before} == before

    _revision_file(
        tmp_path,
        "9001",
        HEAD,
        '    op.execute(text("ALTER TABLE orders ADD COLUMN note TEXT"))\n'
        "    op.execute(text(\"UPDATE orders SET note = 'was ' || order_state\"))",
        "orders.note",
    )
    later = alembic_config(version_locations=(tmp_path,))
    assert migrate(fresh_engine, config=later) == "9001"
    assert {s: _read_old(fresh_engine, s) for s in before} == before
    with fresh_engine.connect() as conn:
        notes = set(conn.execute(text("SELECT note FROM orders")).scalars())
    assert notes == {"was En cours", "was Livré"}
    assert current_revision(fresh_engine) == "9001"


@pytest.mark.parametrize("legacy_version", [1, 2])
def test_database_of_the_first_migration_framework_upgrades_in_place(
    fresh_engine: Engine, legacy_version: int
) -> None:
    """A database at schema_version v1 or v2 (ecosync's own framework before Alembic)."""
    migrate(fresh_engine, revision=f"000{legacy_version}")
    with fresh_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {BOOKKEEPING}"))
        conn.execute(
            text(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
        )
        for v in range(1, legacy_version + 1):
            conn.execute(
                text("INSERT INTO schema_version VALUES (:v, 'legacy', CURRENT_TIMESTAMP)"),
                {"v": v},
            )
        ensure_store(conn, "NATUR", "Natur")
        _write_old(conn, "NATUR", make_page(1, 30))
    assert current_revision(fresh_engine) == f"000{legacy_version}"
    before = _read_old(fresh_engine, "NATUR")

    assert migrate(fresh_engine) == HEAD
    assert _shape(fresh_engine) == _model_shape()
    assert "schema_version" not in inspect(fresh_engine).get_table_names()
    assert _read_old(fresh_engine, "NATUR") == before


def test_failing_migration_rolls_back_every_step_of_the_run(
    fresh_engine: Engine, tmp_path: Path
) -> None:
    _revision_file(
        tmp_path,
        "9001",
        HEAD,
        '    op.execute(text("CREATE TABLE half_done (x INTEGER)"))\n'
        '    op.execute(text("SELECT * FROM no_such_table"))',
        "broken",
    )
    config = alembic_config(version_locations=(tmp_path,))
    with pytest.raises(StorageError, match=r"migration 9001 \(broken\) failed.*unchanged"):
        migrate(fresh_engine, config=config)
    assert current_revision(fresh_engine) is None
    assert not {"orders", "half_done"} & set(inspect(fresh_engine).get_table_names())
    assert migrate(fresh_engine) == HEAD


def test_database_newer_than_the_code_is_refused(fresh_engine: Engine, tmp_path: Path) -> None:
    _revision_file(tmp_path, "9001", HEAD, "    pass", "from a newer ecosync")
    migrate(fresh_engine, config=alembic_config(version_locations=(tmp_path,)))
    with pytest.raises(StorageError, match="newer than this ecosync knows"):
        migrate(fresh_engine)


def test_the_revisions_form_one_line_and_a_second_head_is_refused(tmp_path: Path) -> None:
    """Two revisions on one parent (two engineers' changes) must be put in a line."""
    script = script_directory()
    revisions = list(script.walk_revisions())
    assert [r.revision for r in reversed(revisions)] == [
        f"{n:04d}" for n in range(1, len(revisions) + 1)
    ]
    assert script.get_heads() == [HEAD]
    parent = revisions[1].revision
    _revision_file(tmp_path, "9001", parent, "    pass", "a sibling of the head")
    with pytest.raises(StorageError, match="2 heads"):
        head_revision(alembic_config(version_locations=(tmp_path,)))


def test_two_migrators_at_once_apply_each_migration_once(database_url: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _revision_file(
        tmp_path / "versions",
        "9001",
        HEAD,
        f"    with open({str(calls)!r}, 'a') as f:\n        f.write('1')\n"
        "    import time\n    time.sleep(0.3)",
        "counted",
    )
    engines = [make_engine(database_url) for _ in range(2)]
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(engine: Engine) -> None:
        try:
            barrier.wait()
            # A config each: it carries the migrator's connection.
            config = alembic_config(version_locations=(tmp_path / "versions",))
            results.append(migrate(engine, config=config))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert results == ["9001"] * 2
        assert calls.read_text() == "1"
        assert current_revision(engines[0]) == "9001"
    finally:
        for e in engines:
            e.dispose()


def test_tables_created_without_bookkeeping_are_adopted(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        metadata.create_all(conn, tables=[metadata.tables["stores"], metadata.tables["orders"]])
        ensure_store(conn, "NATUR", "Natur")
        upsert_orders(conn, "NATUR", make_page(1, 5))
    assert migrate(fresh_engine) == HEAD
    assert len(orders_after(fresh_engine, "NATUR", None, 100)) == 5


def test_ecosync_db_upgrade_brings_the_configured_database_to_the_head(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"schema empty -> {HEAD}" in result.output
    result = CliRunner().invoke(main, ["db", "current"])
    assert f"at {HEAD}, newest {HEAD}" in result.output
    engine = make_engine(sqlite_url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_the_alembic_cli_with_the_project_config_upgrades_and_reports(sqlite_url: str) -> None:
    env = {**os.environ, "ECOSYNC_DATABASE_URL": sqlite_url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini")]
    done = subprocess.run(
        [*alembic, "upgrade", "head"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([*alembic, "current"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert f"{HEAD} (head)" in shown.stdout, shown.stdout + shown.stderr
    engine = make_engine(sqlite_url)
    try:
        assert _shape(engine) == _model_shape()
    finally:
        engine.dispose()


def _rows_seen(conn: Any, store: str, ids: range | list[int], seen: datetime) -> None:
    """Orders of ``store`` first written at ``seen`` (by the poll, or by a delivery)."""
    rows = [
        {"store": store, "order_id": i, "items": [], "first_seen_at": seen, "last_seen_at": seen}
        for i in ids
    ]
    conn.execute(orders_table.insert(), rows)


def _delivered(conn: Any, store: str, order_id: int, received: datetime, outcome: str) -> None:
    """An applied OrderCreated delivery in the inbox, as the receiver and applier left it."""
    conn.execute(
        webhook_inbox.insert().values(
            store=store,
            event="OrderCreated",
            webhook_id="1",
            order_id=order_id,
            body_sha256=f"{store}{order_id}".ljust(64, "0"),
            body=b"{}",
            received_at=received,
            applied_at=received,
            outcome=outcome,
        )
    )


def test_revision_0009_sets_each_frontier_from_the_rows_the_poll_wrote(
    fresh_engine: Engine,
) -> None:
    assert migrate(fresh_engine, revision="0008") == "0008"
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    minute = timedelta(minutes=1)
    with fresh_engine.begin() as conn:
        for store in ("NATUR", "PURNA", "DILST", "JWLR"):
            ensure_store(conn, store, store)
        # NATUR: polled to 200; order 260's delivery alone (a gap); the old sync then
        # resumed from 260's page and polled 241..259: 201..240 were never read.
        _rows_seen(conn, "NATUR", range(1, 201), t0)
        _delivered(conn, "NATUR", 260, t0 + minute, "gap")
        _rows_seen(conn, "NATUR", [260], t0 + minute)
        _rows_seen(conn, "NATUR", range(241, 260), t0 + 2 * minute)
        # PURNA: only polled (a delivery of an order the poll had written first).
        _rows_seen(conn, "PURNA", range(500, 900, 7), t0)
        _delivered(conn, "PURNA", 899, t0 + minute, "applied")
        # DILST: a delivery of a store never polled.
        _delivered(conn, "DILST", 40, t0, "gap")
        _rows_seen(conn, "DILST", [40], t0)
        # JWLR: polled to 50; order 51 first written by its delivery (no gap below it).
        _rows_seen(conn, "JWLR", range(1, 51), t0)
        _delivered(conn, "JWLR", 51, t0 + minute, "applied")
        _rows_seen(conn, "JWLR", [51], t0 + minute)
    assert migrate(fresh_engine) == HEAD
    assert read_frontiers(fresh_engine) == {"NATUR": 200, "PURNA": 899, "JWLR": 50}
