"""Crashes of the sync itself: the process SIGKILLed mid-page, its database connection dropped.

A crash may stop a run, never corrupt the result: the position stays at or behind the
committed orders (DESIGN, invariant 2), and the next run finishes the job.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from ecosync_pipeline.errors import StorageError, StoreLockLost
from ecosync_pipeline_tests.faults_support import (
    Driver,
    FaultFigures,
    Scale,
    audit,
    injector_for,
    sync_command,
    sync_under,
)
from ecosync_pipeline_tests.helpers import World, reconcile, settings_environ

pytestmark = pytest.mark.faults


def _requests(world: World) -> int:
    return sum(world.simulator.request_count(s.identifier) for s in world.stores)


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


def test_sync_process_killed_mid_page_then_rerun_loses_and_duplicates_no_order(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale, tmp_path: Path
) -> None:
    # Latency keeps a page in flight most of the time, so a kill lands mid-page.
    world, figures = scenario("(c) sync process SIGKILL", latency_ms=10)
    env = {**os.environ, **settings_environ(world.settings)}
    log = tmp_path / "sync-process.log"
    driver = Driver(world, figures, seed=3)
    rng = random.Random(3)
    attempts = 0
    while figures.injected < scale.process_kills:
        attempts += 1
        assert attempts <= 3 * scale.process_kills, (
            f"runs kept ending before the kill:\n{_tail(log)}"
        )
        for store in driver.stores:
            world.simulator.add_orders(store, rng.randint(0, 40))
        before = _requests(world)
        process = sync_command(env, log)
        figures.add("syncs")
        try:
            # Wait for the first API request (the interpreter takes a while to start),
            # then let it run for a random while.
            deadline = time.monotonic() + 60
            while _requests(world) == before and process.poll() is None:
                assert time.monotonic() < deadline, f"the sync never called the API:\n{_tail(log)}"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.2))
            if process.poll() is None:
                process.kill()  # SIGKILL
                figures.add("injected")
                figures.add("mid_sync")
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode > 0:
            figures.add("failed_syncs")
        with driver.runtime() as rt:
            driver.check_positions(rt)
    # Rerun to the end, as the next scheduled process would.
    final = sync_command(env, log)
    figures.add("syncs")
    assert final.wait(timeout=300) == 0, _tail(log)
    figures.notes.append(f"{attempts} processes started, {figures.injected} killed mid-run")
    assert figures.failed_syncs == 0, _tail(log)
    audit(driver)


def terminate_action(conn: psycopg.Connection[Any]) -> Callable[[], bool]:
    """pg_terminate_backend on every connection the sync holds to the test database."""

    def terminate() -> bool:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = 'ecosync'"
        ).fetchall()
        return any(ok for (ok,) in rows)

    return terminate


def test_database_connections_dropped_mid_batch_lose_and_duplicate_no_order(
    scenario: Callable[..., tuple[World, FaultFigures]], scale: Scale, postgres_url: str
) -> None:
    world, figures = scenario("(e) PostgreSQL connection dropped")
    # A dropped connection may fail a run (StorageError names the store; StoreLockLost
    # when it was the lock's connection); the engine retries a page once, and the next
    # run must finish what this one could not.
    driver = Driver(world, figures, allowed=(StorageError, StoreLockLost), seed=5)
    admin = psycopg.connect(postgres_url, autocommit=True, application_name="ecosync-faults")
    terminator = injector_for(
        driver, "pg-terminate", terminate_action(admin), scale.pg_drops, gap=(0.0, 0.25), seed=5
    )
    try:
        sync_under(terminator, driver)
    finally:
        admin.close()
    assert terminator.done == scale.pg_drops
    driver.sync_until_clean()
    for error in sorted({e[:110] for e in driver.errors})[:4]:
        figures.notes.append(f"a run failed with {error}")
    audit(driver)


def test_connection_dropped_between_insert_and_commit_is_retried_not_leaked(
    build: Callable[..., World],
    redis_url: str,
    postgres_url: str,
) -> None:
    """The drop that (e) finds at random, made to land on the COMMIT of a page every time.

    storage.write_page promises to retry a page once on a dropped connection; a drop between
    the INSERT and the COMMIT must be retried too (or at least surface as StorageError), never
    escape as a raw SQLAlchemy error.
    """
    world = build()
    store = "NATUR"
    admin = psycopg.connect(postgres_url, autocommit=True, application_name="ecosync-faults")
    state = {"inserted": False, "dropped": 0}

    def after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ORDERS"):
            state["inserted"] = True

    def before_commit(conn: Any) -> None:
        if state["inserted"] and not state["dropped"]:
            pid = conn.connection.dbapi_connection.info.backend_pid
            # Wait for the session to end, so the COMMIT meets a dead connection every time.
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            state["dropped"] += 1

    try:
        with world.open() as rt:
            event.listen(rt.engine, "after_cursor_execute", after_execute)
            event.listen(rt.engine, "commit", before_commit)
            try:
                result = rt.sync(store)
            except StorageError:
                result = None  # acceptable: ours, naming the store; the rerun completes
            assert state["dropped"] == 1
            if result is None:
                result = rt.sync(store)
            assert result.reached_end
            rec = reconcile(rt, world.simulator, store)
            assert (rec.missing, rec.duplicated) == (0, 0), rec
    finally:
        admin.close()
