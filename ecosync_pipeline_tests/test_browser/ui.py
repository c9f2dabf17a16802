"""What the browser tests share: two small stores, their setup sync, Redis positions,
screenshots under test-output/browser/, and clicking Materialize in the Dagster UI."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import redis

from ecosync_pipeline.lab.simulator import Simulator
from ecosync_pipeline.positions.redis_layer import KEY_PREFIX
from ecosync_pipeline_tests.conftest import REDIS_MARKER
from ecosync_pipeline_tests.helpers import World, make_world, settings_environ, two_stores
from ecosync_pipeline_tests.test_browser.webserver import (
    Webserver,
    dagster_daemon,
    dagster_webserver,
    write_instance,
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


def synced_world(
    simulator: Simulator,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[World, dict[str, int]]:
    """The browser stores on the test's databases, each synced once: the world and the last
    order id of each store, the setup every browser test starts from."""
    world = make_world(
        simulator,
        SPECS,
        database_url=database_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
    )
    return world, sync_every_store(world)


def location_env(world: World, sensor_interval_s: int) -> dict[str, str]:
    """The environment of the webserver and the daemon: the test's stores and sensor
    interval, and no scheduled sync (the test syncs; the sensor and the clicks restore)."""
    return {
        **os.environ,
        **settings_environ(world.settings),
        "ECOSYNC_SENSOR_INTERVAL_SECONDS": str(sensor_interval_s),
        "ECOSYNC_SYNC_CRON": "0 0 1 1 *",
    }


@contextmanager
def dagster_running(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Webserver, Path]]:
    """A webserver and a daemon on one fresh instance: the webserver, the daemon's log."""
    home = write_instance(tmp_path / "dagster_home")
    workdir = tmp_path / "webserver"
    workdir.mkdir()
    with (
        dagster_webserver(home, env, workdir) as server,
        dagster_daemon(home, env, workdir) as daemon_log,
    ):
        yield server, daemon_log


@contextmanager
def kept_for_a_look(
    page: Any, server: Webserver, daemon_log: Path, tmp_path: Path, prefix: str
) -> Iterator[None]:
    """Close the page; on failure keep its screenshot and the webserver's log, and always
    the daemon's log, under test-output/browser/ with the test's prefix, to see what broke."""
    try:
        yield
        (OUTPUT / f"{prefix}-failure.png").unlink(missing_ok=True)
    except BaseException:
        with suppress(Exception):
            save_screenshot(page, tmp_path, f"{prefix}-failure.png")
            (OUTPUT / f"{prefix}-webserver.log").write_text(server.log_tail(50_000))
        raise
    finally:
        page.close()
        with suppress(OSError):
            (OUTPUT / f"{prefix}-daemon.log").write_text(daemon_log.read_text()[-50_000:])


def write_figures(figures: dict[str, float], prefix: str) -> None:
    """The figures, one per line, into test-output/browser/<prefix>-figures.txt, and printed."""
    report = "\n".join(f"{name}: {value:.1f}" for name, value in figures.items())
    (OUTPUT / f"{prefix}-figures.txt").write_text(report + "\n", encoding="utf-8")
    print(report)


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
