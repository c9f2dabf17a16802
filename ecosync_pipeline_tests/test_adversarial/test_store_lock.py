"""The store lock fenced: a run that lost its lock finds out before its next write and stops.

On PostgreSQL the lock's connection is terminated mid-run (the server frees the advisory
lock); on SQLite the lock file is removed. A second run then takes the store; the first
must stop with StoreLockLost before writing another page or position, so the two never
interleave, and the second's position is the one that stays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ecosync_pipeline.config import Settings
from ecosync_pipeline.errors import StoreLockLost
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import duplicate_count, store_lock_key, store_summary
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, dialect, make_token

ORDERS = 200


def lose_lock(database_url: str, lock_file: Path) -> None:
    """Take the running sync's lock away from it, as a dropped connection would."""
    if not database_url.startswith("postgresql"):
        lock_file.unlink()
        return
    key = store_lock_key("FENCE")
    with psycopg.connect(database_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 1",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchone()
        assert row is not None, "the first run holds the lock"
        # With a timeout, pg_terminate_backend waits for the backend to exit, so the lock
        # is free when this returns; without one it only signals, and the next run may race
        # the dying session for the lock.
        ended = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (row[0],)).fetchone()
        assert ended == (True,), f"the first run's session (pid {row[0]}) did not end in 10 s"


def test_run_that_lost_its_lock_stops_and_never_writes_between_the_new_holders_pages(
    cli_world: CliWorld,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case_row: Callable[..., None],
) -> None:
    store = AdversarialStore("FENCE", make_token(), list(range(1, ORDERS + 1)), delay=0.1)
    cli_world.configure(store)
    monkeypatch.setenv("ECOSYNC_TOKEN_FENCE", store.token)
    settings = Settings.from_env(cli_world.env)
    first, second = Runtime.from_settings(settings), Runtime.from_settings(settings)
    outcome: list[object] = []

    def run_first() -> None:
        try:
            outcome.append(first.sync("FENCE"))
        except Exception as exc:  # the outcome is asserted below
            outcome.append(exc)

    thread = threading.Thread(target=run_first)
    try:
        thread.start()
        deadline = time.monotonic() + 20
        while store_summary(second.engine, "FENCE").order_count < 40:
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.02)
        lose_lock(cli_world.database_url, Path(settings.database_url[10:]).parent / "FENCE.lock")
        result = second.sync("FENCE")
        thread.join(timeout=30)
        assert len(outcome) == 1 and isinstance(outcome[0], StoreLockLost), outcome
        assert "store FENCE: this run lost the store's sync lock" in str(outcome[0])
        assert result.reached_end and result.last_order_id == ORDERS
        summary = store_summary(second.engine, "FENCE")
        assert summary.order_count == ORDERS and duplicate_count(second.engine, "FENCE") == 0
        # The first run wrote nothing after the second took over: the last position
        # written is the second run's, at the store's end.
        final = second.chain.redis.read("FENCE")
        assert isinstance(final, SyncPosition) and final.last_order_id == ORDERS
    finally:
        thread.join(timeout=30)
        first.close()
        second.close()
    case_row(
        f"lock lost mid-run ({dialect(cli_world.database_url)})",
        missing=ORDERS - summary.order_count,
        blocked=False,
        leaked=None,
        peak_mb=None,
        message=f"{type(outcome[0]).__name__}: {outcome[0]}",
    )
