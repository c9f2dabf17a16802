"""What the browser tests share: two small stores, their setup sync, Redis positions,
screenshots under test-output/browser/, and clicking Materialize in the Dagster UI."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from ecosync_pipeline.positions.redis_layer import KEY_PREFIX
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.helpers import World, two_stores
from ecosync_pipeline_tests.test_browser.webserver import (
    Webserver,
)

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
RESTORE_ASSET = "restored_sync_positions"
ASSET = "store_sync_positions"
SENSOR = "cache_loss_sensor"
CHECKS = ("cache_health", "position_health", "layer_agreement")
MATERIALIZE = re.compile(r"^\s*Materialize")
# The buttons that go ahead in any confirmation the UI may ask for (missing upstream
# data, launching with a warning); never Cancel.
CONFIRM = re.compile(r"^\s*(Materialize|Launch|Confirm|Continue)")
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 90.0


SPECS = two_stores("ECOSYNC_BROWSER_TOKEN_")
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


def click_materialize(page: Any, server: Webserver, timeout_s: float) -> tuple[dict[str, Any], int]:
    """Click Materialize, confirm any dialog the UI raises; the run it launched and the
    number of clicks it took."""
    button = page.locator("button", has_text=MATERIALIZE).first
    button.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    earlier = {r["runId"] for r in server.runs()}
    button.click()
    clicks = 1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        launched = [r for r in server.runs() if r["runId"] not in earlier]
        if launched:
            return launched[-1], clicks
        dialogs = page.get_by_role("dialog")
        if dialogs.count() and dialogs.last.is_visible():
            confirm = dialogs.last.locator("button", has_text=CONFIRM)
            if confirm.count() and confirm.last.is_enabled():
                OUTPUT.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUTPUT / f"dialog-{clicks}.png"))
                confirm.last.click()
                clicks += 1
        time.sleep(0.5)
    raise AssertionError(
        f"no run was launched within {timeout_s:.0f} s of clicking Materialize on {RESTORE_ASSET}:"
        f"\n{server.log_tail()}"
    )


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``condition`` every half second; the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def checks_are(server: Webserver, status: str) -> bool:
    """Every position check's latest evaluation has ``status`` (SUCCEEDED or FAILED)."""
    checks = server.checks(ASSET)
    return all(checks.get(name, {}).get("status") == status for name in CHECKS)


def runs_of(server: Webserver, job: str) -> list[dict[str, Any]]:
    """The runs of ``job``, newest first."""
    return [r for r in server.runs() if r["jobName"] == job]


def tick_figures(ticks: list[dict[str, Any]], flushed_at: float) -> dict[str, float]:
    """When the first tick ending after the flush ended, and how long ticks take and lie apart."""
    after = sorted(t["endTimestamp"] for t in ticks if (t.get("endTimestamp") or 0) >= flushed_at)
    spans = sorted(t["endTimestamp"] - t["timestamp"] for t in ticks if t.get("endTimestamp"))
    starts = sorted(t["timestamp"] for t in ticks)
    gaps = sorted(b - a for a, b in zip(starts, starts[1:], strict=False))
    return {
        "flush_to_end_of_next_tick_s": after[0] - flushed_at if after else float("nan"),
        "tick_seconds_median": spans[len(spans) // 2] if spans else float("nan"),
        "tick_seconds_max": spans[-1] if spans else float("nan"),
        "seconds_between_ticks_median": gaps[len(gaps) // 2] if gaps else float("nan"),
    }


def flush(client: redis.Redis) -> tuple[float, float]:
    """FLUSHDB on the test database (keeping its marker); when, monotonic and epoch."""
    client.flushdb()
    client.set(REDIS_MARKER, "1")
    assert redis_positions(client) == {}
    return time.monotonic(), time.time()
