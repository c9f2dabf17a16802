"""One story per loss and one restore at a time, through cache_loss_sensor, the recovery
job and the restore button (restored_sync_positions) on one persistent instance, as the
daemon and the UI share it.

- a flush restored at once by hand makes one recovery in all, and that restore stays
  the latest materialization of restored_sync_positions, however often it is clicked;
- a click while the sensor's recovery is under way steps aside, and the recommendation
  and the checks name the run under way instead of asking for a Materialize;
- the recovery job waits for a restore launched before it;
- the loss's story (seen, stores, layer, run, seconds) stays on the positions after it;
- moved positions are recorded at the next tick, then at most once a minute, with the
  time they were read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetObservation,
    DagsterInstance,
    DagsterRunStatus,
    SensorDefinition,
    build_sensor_context,
    materialize,
)

from ecosync_pipeline.defs.positions import restores, sensors
from ecosync_pipeline.defs.positions.assets import restored_sync_positions
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
from ecosync_pipeline.positions.model import utc_now
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    flush_redis,
    metadata_values,
    sync_all,
)
from ecosync_pipeline_tests.test_defs.test_sensor import evaluations, observation, tick

RESTORED = AssetKey("restored_sync_positions")
POSITIONS = AssetKey("store_sync_positions")
MATERIALIZE = "Materialize restored_sync_positions"


@pytest.fixture(scope="module")
def sensor() -> SensorDefinition:
    return build_cache_loss_sensor(recover_sync_positions)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent instance, shared by the sensor's ticks and the runs."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        yield instance


class Logged(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def click_restore(env: Env, instance: DagsterInstance) -> Any:
    """Materialize restored_sync_positions, as the UI's button does."""
    result = materialize([restored_sync_positions], instance=instance, resources=env.resources)
    assert result.success
    return result


def restores_recorded(result: Any) -> list[Any]:
    """The materializations of restored_sync_positions a run recorded."""
    return [m for m in result.get_asset_materialization_events() if m.asset_key == RESTORED]


def latest(instance: DagsterInstance, key: AssetKey) -> tuple[str, dict[str, Any]]:
    """The run id and metadata values of the latest materialization of ``key``."""
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None
    return event.run_id, metadata_values(event.asset_materialization.metadata)


def healthy(sensor: SensorDefinition, env: Env, instance: DagsterInstance) -> str:
    """Sync both stores, one healthy tick: the cursor a running sensor holds."""
    sync_all(env)
    result = tick(sensor, env, instance, None)
    assert not result.run_requests
    return str(result.cursor)


def test_a_flush_restored_at_once_by_hand_makes_one_recovery_in_all_and_stays_the_latest(
    sensor: SensorDefinition,
    env: Env,
    shared: DagsterInstance,
) -> None:
    cursor = healthy(sensor, env, shared)
    flush_redis(env)
    clicked = click_restore(env, shared)
    [restore] = restores_recorded(clicked)
    assert metadata_values(restore.materialization.metadata)["from_json"] == len(STORES)
    # The sensor looks after the click: the loss is mended, so no recovery is launched,
    # and nothing in its log reads like a new loss.
    logged = Logged()
    with build_sensor_context(instance=shared, cursor=cursor, resources=env.resources) as context:
        context.log.addHandler(logged)
        after = sensor.evaluate_tick(context)
    for event in after.asset_events:
        shared.report_runless_asset_event(event)
    assert not [m for m in logged.messages if "cache loss" in m], logged.messages
    assert after.run_requests == []
    assert f"already mended by run {clicked.run_id[:8]}" in (after.skip_message or "")
    assert "without a key" not in (after.skip_message or "")
    assert tick(sensor, env, shared, after.cursor).run_requests == []
    # Clicked again: nothing to do, nothing recorded; the restore that read the backup
    # stays the latest materialization, with its story.
    again = click_restore(env, shared)
    assert restores_recorded(again) == []
    run_id, metadata = latest(shared, RESTORED)
    assert run_id == clicked.run_id
    assert metadata["from_json"] == len(STORES)
    assert metadata["story"].endswith(
        f"{len(STORES)} stores (NATUR, PURNA), restored from the backup by run "
        f"{clicked.run_id[:8]} in {metadata['story'].rsplit(' in ', 1)[1]}"
    )
    assert metadata["story"].startswith("last loss ")
    recovery_runs = [r for r in shared.get_runs() if r.job_name == "recover_sync_positions"]
    assert recovery_runs == []


def test_a_click_during_the_sensors_recovery_steps_aside_and_the_advice_names_the_run(
    sensor: SensorDefinition, env: Env, shared: DagsterInstance
) -> None:
    cursor = healthy(sensor, env, shared)
    flush_redis(env)
    lost = tick(sensor, env, shared, cursor)
    [request] = lost.run_requests
    # While the sensor's tick stands, the advice already says a recovery was launched.
    assert MATERIALIZE not in observation(lost)["recommendation"]
    assert "no click needed" in observation(lost)["recommendation"]
    # The daemon launched the run: it is queued, not started yet.
    queued = shared.create_run_for_job(recover_sync_positions, tags=request.tags)
    clicked = click_restore(env, shared)
    assert restores_recorded(clicked) == []
    assert env.redis.keys("ecomanager:pageinfo:*") == []  # the click restored nothing
    # The Runs page says why: the click's run names the run it stepped aside for.
    clicked_run = shared.get_run_by_id(clicked.run_id)
    assert clicked_run is not None
    assert clicked_run.tags["ecosync/stepped-aside-for"] == queued.run_id
    during = tick(sensor, env, shared, lost.cursor)
    assert during.run_requests == []
    assert f"run {queued.run_id[:8]} of recover_sync_positions" in (during.skip_message or "")
    shown = observation(during)
    assert f"run {queued.run_id[:8]}" in shown["recommendation"]
    assert MATERIALIZE not in shown["recommendation"]
    for name, check in evaluations(during).items():
        assert not check.passed, name
        assert MATERIALIZE not in (check.description or ""), (name, check.description)
    assert f"run {queued.run_id[:8]}" in (evaluations(during)["position_health"].description or "")
    assert evaluations(during)["cache_health"].severity.value == "ERROR"


def test_the_recovery_job_waits_for_a_restore_launched_before_it(
    env: Env, shared: DagsterInstance
) -> None:
    sync_all(env)
    flush_redis(env)
    # A restore launched earlier (queued, say), which restores and ends two seconds later.
    earlier = shared.create_run_for_job(recover_sync_positions)

    def restore_then_end() -> None:
        time.sleep(2)
        runtime = env.runtime()
        try:
            assert all(r.ok for r in runtime.chain.restore_all(runtime.client))
        finally:
            runtime.close()
        shared.report_run_canceled(shared.get_run_by_id(earlier.run_id))  # type: ignore[arg-type]

    other = threading.Thread(target=restore_then_end)
    started = time.monotonic()
    other.start()
    try:
        result = recover_sync_positions.execute_in_process(instance=shared, resources=env.resources)
    finally:
        other.join()
    assert result.success
    assert time.monotonic() - started >= 2
    messages = [
        e.message
        for e in shared.all_logs(result.run_id)
        if e.step_key == "detect_cache_loss" and e.message
    ]
    assert any(f"run {earlier.run_id[:8]}" in m and "waiting" in m for m in messages), messages
    # The earlier restore mended everything: this one restored nothing, recorded nothing.
    assert restores_recorded(result) == []
    assert shared.get_latest_materialization_event(RESTORED) is None


def test_a_loss_is_one_story_from_the_sensor_seeing_it_to_its_restore_and_after(
    sensor: SensorDefinition,
    env: Env,
    shared: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cursor = healthy(sensor, env, shared)
    flush_redis(env)
    lost = tick(sensor, env, shared, cursor)
    [request] = lost.run_requests
    [seen] = [e for e in lost.asset_events if isinstance(e, AssetObservation)]
    assert seen.asset_key == RESTORED
    seen_values = metadata_values(seen.metadata)
    assert seen_values["loss_event"] == request.tags["ecosync/loss-event"]
    assert seen_values["story"].startswith("loss ")
    assert "2 stores (NATUR, PURNA) without a position (Redis flushed)" in seen_values["story"]
    assert observation(lost)["last_loss"] == seen_values["story"]
    # Seen again: no second observation of the same loss.
    again = tick(sensor, env, shared, lost.cursor)
    assert not [e for e in again.asset_events if isinstance(e, AssetObservation)]
    run = recover_sync_positions.execute_in_process(
        instance=shared, resources=env.resources, tags=request.tags
    )
    assert run.success
    # From its first step, the run is named as the restore under way.
    [starting] = run.asset_materializations_for_node("detect_cache_loss")
    said = metadata_values(starting.metadata)
    assert f"run {run.run_id[:8]} of recover_sync_positions (started)" in said["recommendation"]
    assert MATERIALIZE not in said["recommendation"]
    assert said["last_loss"].startswith("loss ") and f"run {run.run_id[:8]}" in said["last_loss"]
    run_id, story = latest(shared, RESTORED)
    assert run_id == run.run_id
    assert story["loss_event"] == seen_values["loss_event"]
    assert story["loss_seen_at"] == pytest.approx(seen_values["loss_seen_at"], abs=0.01)
    assert 0 <= story["seconds_to_restore"] < 60
    assert story["restored_from"] == {"NATUR": "json", "PURNA": "json"}
    assert story["story"].startswith("last loss ")
    told = int(story["story"].rsplit(" in ", 1)[1].removesuffix(" s"))
    assert abs(told - story["seconds_to_restore"]) <= 1
    assert story["story"].endswith(
        f", 2 stores (NATUR, PURNA), restored from the backup by run {run.run_id[:8]} in {told} s"
    )
    _, table = latest(shared, POSITIONS)
    assert table["last_loss"] == story["story"]
    # After it, the story stays on the positions, whatever records them next.
    settled = tick(sensor, env, shared, again.cursor)
    assert settled.run_requests == []
    env.simulator.add_orders("NATUR", 30)
    sync_all(env)
    monkeypatch.setattr(sensors, "FIGURES_REFRESH_SECONDS", 0)
    later = tick(sensor, env, shared, settled.cursor)
    assert observation(later)["last_loss"] == story["story"]


def test_moved_positions_are_recorded_at_the_next_tick_then_at_most_once_a_minute(
    sensor: SensorDefinition,
    env: Env,
    shared: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cursor = healthy(sensor, env, shared)
    [first] = env.simulator.add_orders("NATUR", 25)[-1:]
    sync_all(env)
    # Recorded at the next tick, with the time its figures were read.
    moved = tick(sensor, env, shared, cursor)
    shown = observation(moved)
    rows = {r.data["store"]: r.data for r in shown["stores"].records}
    assert rows["NATUR"]["last_id"] == rows["NATUR"]["db_last_id"] == first
    assert shown["dagster/row_count"] == len(STORES)
    assert abs(shown["read_at"] - utc_now().timestamp()) < 30
    assert all(row["age"].endswith(" s") for row in rows.values())
    # Moved again within the minute: the figures wait for the minute to pass.
    [second] = env.simulator.add_orders("NATUR", 25)[-1:]
    sync_all(env)
    assert tick(sensor, env, shared, moved.cursor).asset_events == []
    monkeypatch.setattr(sensors, "FIGURES_REFRESH_SECONDS", 0)
    later = tick(sensor, env, shared, moved.cursor)
    rows = {r.data["store"]: r.data for r in observation(later)["stores"].records}
    assert rows["NATUR"]["last_id"] == second
    # Nothing moved since: nothing recorded, however short the throttle.
    assert tick(sensor, env, shared, later.cursor).asset_events == []


def test_a_restore_under_way_for_too_long_is_taken_for_dead_and_holds_nothing_back(
    sensor: SensorDefinition,
    env: Env,
    shared: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cursor = healthy(sensor, env, shared)
    # A recovery whose worker died without its run being marked: still "started".
    shared.create_run_for_job(recover_sync_positions, status=DagsterRunStatus.STARTED)
    flush_redis(env)
    assert tick(sensor, env, shared, cursor).run_requests == []
    monkeypatch.setattr(restores, "STALE_SECONDS", 0.0)
    time.sleep(0.01)
    [request] = tick(sensor, env, shared, cursor).run_requests
    assert request.run_key.startswith("recover:flushed:")
