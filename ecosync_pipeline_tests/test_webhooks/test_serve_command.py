"""`ecosync webhooks serve` as a deployment runs it: a process of its own, over real HTTP;
and the sync it runs for a store when a delivery leaves a gap (--sync-on-gap)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from ecosync_pipeline.asgi import bind_socket
from ecosync_pipeline.cli import main
from ecosync_pipeline.commands.webhooks import GapSyncer
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import make_engine, migrate, store_summary
from ecosync_pipeline.storage.schema import orders
from ecosync_pipeline.webhooks.signature import sign
from ecosync_pipeline_tests.helpers import make_world
from ecosync_pipeline_tests.test_webhooks.conftest import SECRET, SECRET_ENV, body_of, order

ECOSYNC = str(Path(sys.executable).with_name("ecosync"))


def _stores_file(tmp_path: Path) -> Path:
    entry = {
        "identifier": "NATUR",
        "name": "Natura",
        "base_url": "https://natur.ecomanager.dz",
        "token_env": "ECOSYNC_TOKEN_NATUR",
        "webhook_secret_env": SECRET_ENV,
    }
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": [entry]}), encoding="utf-8")
    return path


def test_serve_refuses_to_start_when_a_store_secret_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOSYNC_STORES_FILE", str(_stores_file(tmp_path)))
    monkeypatch.setenv("ECOSYNC_DATABASE_URL", f"sqlite:///{tmp_path}/ecosync.db")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    result = CliRunner().invoke(main, ["webhooks", "serve", "--port", "0"])
    assert result.exit_code == 1
    assert f"MissingWebhookSecret: store NATUR: no webhook secret; export {SECRET_ENV}=" in (
        result.output
    )


def test_serve_receives_a_signed_delivery_and_applies_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/ecosync.db"
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    env = dict(os.environ)
    env.update(
        ECOSYNC_STORES_FILE=str(_stores_file(tmp_path)),
        ECOSYNC_DATABASE_URL=database,
        **{SECRET_ENV: SECRET},
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [ECOSYNC, "webhooks", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=tmp_path,  # `ecosync` reads ./.env: the project root's (the demo's) stays out
    )
    url = f"http://127.0.0.1:{port}/webhooks/NATUR"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the receiver did not start"
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = body_of(order(42))
        headers = {
            "X-Ecomanager-Signature": sign(SECRET, body),
            "X-Ecomanager-Event": "OrderCreated",
        }
        assert httpx.post(url, content=body, headers=headers, timeout=5).json() == {"stored": True}
        engine = make_engine(database)
        try:
            deadline = time.monotonic() + 10
            while True:
                with engine.connect() as conn:
                    ids = conn.execute(select(orders.c.order_id)).scalars().all()
                if ids:
                    break
                assert time.monotonic() < deadline, "the delivery was not applied"
                time.sleep(0.05)
        finally:
            engine.dispose()
        assert ids == [42]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    assert SECRET not in (tmp_path / "serve.log").read_text()


def test_sync_on_gap_runs_the_store_sync_once_at_a_time(
    simulator: Simulator,
    sqlite_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = make_world(
        simulator,
        [StoreSpec("NATUR", count=45)],
        database_url=sqlite_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
    )
    engine = make_engine(sqlite_url)
    migrate(engine)
    runtime = Runtime(world.settings)
    syncer = GapSyncer(runtime)
    syncer("NATUR", [46])
    syncer("NATUR", [47])  # while the first runs: not a second sync
    try:
        deadline = time.monotonic() + 30
        while store_summary(engine, "NATUR").order_count < 45:
            assert time.monotonic() < deadline, "the gap sync did not bring the orders"
            time.sleep(0.1)
    finally:
        engine.dispose()
    calls = simulator.request_count("NATUR")
    assert calls <= 4  # 3 pages of 20 (and no second sync)
    syncer("NATUR", [48])  # within a minute of the last: skipped
    time.sleep(0.5)
    assert simulator.request_count("NATUR") == calls
    runtime.close()
