"""The restore button, clicked in the Dagster UI: Materialize restored_sync_positions
after Redis lost every position, and every store's position is back in Redis.

Everything is real: the simulator over HTTP, PostgreSQL, Redis (the test database),
dagster-webserver in a child process launching a run worker, and headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis

from ecosync_pipeline.positions.redis_layer import KEY_PREFIX
from ecosync_pipeline.simulator import Simulator, StoreSpec
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.helpers import World, make_world
from ecosync_pipeline_tests.test_browser.webserver import (
    Webserver,
    dagster_webserver,
    write_instance,
)

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
ASSET = "restored_sync_positions"
MATERIALIZE = re.compile(r"^\s*Materialize")
# The buttons that go ahead in any confirmation the UI may ask for (missing upstream
# data, launching with a warning); never Cancel.
CONFIRM = re.compile(r"^\s*(Materialize|Launch|Confirm|Continue)")
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 90.0

# Small on purpose: a handful of pages each. PURNA's ids start at 500,000 with gaps, so
# its page is nowhere near id / 20 and a restore must locate it on the API.
SPECS = (
    StoreSpec(
        "NATUR",
        name="Natura Bio",
        first_id=1,
        count=95,
        gap_rate=0.05,
        token_env="ECOSYNC_BROWSER_TOKEN_NATUR",
    ),
    StoreSpec(
        "PURNA",
        name="Purna Maison",
        first_id=500_000,
        count=63,
        stride=7,
        gap_rate=0.05,
        token_env="ECOSYNC_BROWSER_TOKEN_PURNA",
    ),
)
STORES = tuple(spec.identifier for spec in SPECS)


def redis_positions(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every store's position as Redis holds it (the stored JSON, parsed)."""
    positions: dict[str, dict[str, Any]] = {}
    for store in STORES:
        raw = client.get(f"{KEY_PREFIX}{store}")
        if raw is not None:
            positions[store] = json.loads(raw)
    return positions


def sync_every_store(world: World) -> dict[str, int]:
    """Sync each store once with the core (setup); the last order id of each."""
    with world.open() as runtime:
        last_ids = {store: runtime.sync(store).last_order_id for store in STORES}
    assert all(last_ids.values()), f"the setup sync stored no orders: {last_ids}"
    return {store: int(last_id or 0) for store, last_id in last_ids.items()}


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Screenshot into the test's folder, copied to test-output/browser/ at the repo root."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, OUTPUT / name)
    return path


def click_materialize(page: Any, server: Webserver, timeout_s: float) -> dict[str, Any]:
    """Click Materialize, confirm any dialog the UI raises; the run it launched."""
    button = page.locator("button", has_text=MATERIALIZE).first
    button.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    button.click()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = server.runs()
        if runs:
            return runs[-1]
        dialogs = page.get_by_role("dialog")
        if dialogs.count() and dialogs.last.is_visible():
            confirm = dialogs.last.locator("button", has_text=CONFIRM)
            if confirm.count() and confirm.last.is_enabled():
                confirm.last.click()
        time.sleep(0.5)
    raise AssertionError(
        f"no run was launched within {timeout_s:.0f} s of clicking Materialize on {ASSET}:"
        f"\n{server.log_tail()}"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_materialize_button_restores_every_store_position_after_redis_flush(
    browser: Any,
    simulator: Simulator,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = make_world(
        simulator,
        SPECS,
        database_url=postgres_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
    )
    last_ids = sync_every_store(world)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        before = redis_positions(client)
        assert set(before) == set(STORES), f"the setup sync left positions for {sorted(before)}"

        settings = world.settings
        env = {
            **os.environ,
            "ECOSYNC_DATABASE_URL": settings.database_url,
            "ECOSYNC_REDIS_URL": settings.redis_url,
            "ECOSYNC_STORES_FILE": settings.stores_file,
            "ECOSYNC_BACKUP_PATH": settings.backup_path,
        }
        home = write_instance(tmp_path / "dagster_home")
        workdir = tmp_path / "webserver"
        workdir.mkdir()
        with dagster_webserver(home, env, workdir) as server:
            client.flushdb()
            client.set(REDIS_MARKER, "1")
            assert redis_positions(client) == {}

            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            try:
                page.goto(f"{server.url}/assets/{ASSET}", timeout=UI_TIMEOUT_MS)
                run = click_materialize(page, server, timeout_s=60)
                status = server.wait_for_run(run["runId"], RUN_TIMEOUT_S)
                assert status == "SUCCESS", (
                    f"run {run['runId']} of {ASSET} ended {status}: "
                    f"{server.run_errors(run['runId'])}\n{server.log_tail()}"
                )
                page.goto(f"{server.url}/runs/{run['runId']}", timeout=UI_TIMEOUT_MS)
                page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=UI_TIMEOUT_MS)
                save_screenshot(page, tmp_path, f"{ASSET}-run.png")
                (OUTPUT / f"{ASSET}-failure.png").unlink(missing_ok=True)
            except BaseException:
                # What the page showed, and the server's log, next to the failure.
                with suppress(Exception):
                    save_screenshot(page, tmp_path, f"{ASSET}-failure.png")
                    shutil.copy2(server.log_path, OUTPUT / "webserver.log")
                raise
            finally:
                page.close()

        after = redis_positions(client)
    finally:
        client.close()

    assert set(after) == set(STORES), f"Redis holds positions for {sorted(after)} only"
    for store in STORES:
        restored, synced = after[store], before[store]
        assert restored["lastOrderId"] == last_ids[store], (store, restored)
        assert restored["lastPage"] == simulator.page_of(store, last_ids[store]), (store, restored)
        assert (restored["lastPage"], restored["perPage"]) == (
            synced["lastPage"],
            synced["perPage"],
        ), (store, synced, restored)
        assert restored["verified"] is True, (store, restored)
        # Written by the restore (from the JSON backup), not left over from the sync.
        assert restored["source"] in ("json", "database"), (store, restored)
