"""store_lock: one run per store, refused at once, and freed when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

import ecosync_pipeline
from ecosync_pipeline.config import validate_store_identifier
from ecosync_pipeline.errors import ConfigError, StoreLocked
from ecosync_pipeline.storage import (
    advisory_key,
    make_engine,
    migrate,
    store_lock,
    store_lock_key,
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from ecosync_pipeline.storage import make_engine, store_lock
    with store_lock(make_engine(sys.argv[1]), sys.argv[2]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def lock_engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    migrate(eng)  # the lock's fencing token lives in the schema (sync_fences)
    try:
        yield eng
    finally:
        eng.dispose()


def _acquire_within(engine: Engine, store: str, seconds: float) -> bool:
    """Whether the lock can be taken within ``seconds`` (the server notices a death quickly)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with store_lock(engine, store):
                return True
        except StoreLocked:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def test_second_acquisition_raises_store_locked_immediately(lock_engine: Engine) -> None:
    with store_lock(lock_engine, "NATUR"):
        started = time.monotonic()
        with pytest.raises(StoreLocked) as caught, store_lock(lock_engine, "NATUR"):
            pass
        assert time.monotonic() - started < 1
        assert caught.value.store == "NATUR"
        assert "NATUR" in str(caught.value)


def test_lock_is_free_again_after_the_block_even_when_it_raised(lock_engine: Engine) -> None:
    with pytest.raises(RuntimeError), store_lock(lock_engine, "NATUR"):
        raise RuntimeError("the sync failed")
    with store_lock(lock_engine, "NATUR"):
        pass
    if lock_engine.dialect.name == "postgresql":
        # The pooled connection went back without the lock: no session holds it.
        with lock_engine.connect() as conn:
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).scalar()
        assert held == 0


def test_different_stores_lock_independently(lock_engine: Engine) -> None:
    with (
        store_lock(lock_engine, "NATUR"),
        store_lock(lock_engine, "PURNA"),
        pytest.raises(StoreLocked),
        store_lock(lock_engine, "PURNA"),
    ):
        pass


def test_lock_held_by_another_thread_is_refused(lock_engine: Engine) -> None:
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store_lock(lock_engine, "NATUR"):
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(StoreLocked), store_lock(lock_engine, "NATUR"):
            pass
    finally:
        release.set()
        holder.join(10)
    assert _acquire_within(lock_engine, "NATUR", 1)


def test_lock_of_a_process_killed_with_sigkill_is_free_afterwards(
    database_url: str, lock_engine: Engine
) -> None:
    root = Path(ecosync_pipeline.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url, "NATUR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "locked", proc.stderr.read() if proc.stderr else ""
        with pytest.raises(StoreLocked), store_lock(lock_engine, "NATUR"):
            pass
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert _acquire_within(lock_engine, "NATUR", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_sqlite_lock_file_sits_next_to_the_database_unless_told_otherwise(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    try:
        database = Path(sqlite_url.removeprefix("sqlite:///"))
        with store_lock(engine, "NATUR"):
            assert (database.parent / "NATUR.lock").exists()
        elsewhere = tmp_path / "locks"
        with store_lock(engine, "PURNA", lock_dir=elsewhere):
            assert (elsewhere / "PURNA.lock").exists()
            with pytest.raises(StoreLocked), store_lock(engine, "PURNA", lock_dir=elsewhere):
                pass
    finally:
        engine.dispose()


def test_store_identifier_is_validated_before_it_names_a_file_or_key(lock_engine: Engine) -> None:
    # store_lock takes a StoreId (test_runtime checks it): none can be made of this.
    with pytest.raises(ConfigError), store_lock(lock_engine, validate_store_identifier("../x")):
        pass


def test_advisory_keys_are_stable_signed_64_bit_and_distinct_per_store() -> None:
    # Fixed value: a different key in a new release would let two versions sync one store.
    assert store_lock_key("NATUR") == advisory_key("ecosync:NATUR") == -9125245252953054732
    keys = {store_lock_key(s) for s in ("NATUR", "PURNA", "DILST", "MGSTR", "JWLR")}
    assert len(keys) == 5
    assert all(-(2**63) <= k < 2**63 for k in keys)
