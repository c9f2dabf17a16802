"""The alert sensors over real runs: each alert reaches the local Slack stand-in and the
local SMTP server once, however many ticks see what it tells.

Runs execute in process on an ephemeral instance against the simulator, the real Redis
and PostgreSQL; each sensor tick is built with Dagster's testing API and given the cursor
the last tick left, as the daemon does. The loss's 5 minutes are an injected clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    SensorDefinition,
    build_sensor_context,
    materialize,
)
from sqlalchemy import delete

from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.alerts import build_alerts_definitions
from ecosync_pipeline.defs.alerts.observations import RANGE_END_TAG, RANGE_START_TAG
from ecosync_pipeline.defs.alerts.sensors import build_alerts_sensor, build_recovery_failure_sensor
from ecosync_pipeline.defs.partitions import register_stores
from ecosync_pipeline.defs.positions.assets import restored_sync_positions
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
from ecosync_pipeline.storage import orders as orders_table
from ecosync_pipeline_tests.test_alerts.servers import SlackRecorder, SmtpRecorder
from ecosync_pipeline_tests.test_defs.conftest import (
    STORES,
    Env,
    flush_redis,
    sync_all,
    sync_partition,
)


class Ticker:
    """One sensor ticking as the daemon ticks it: each tick gets the last tick's cursor."""

    def __init__(self, sensor: SensorDefinition, instance: DagsterInstance, **context: Any):
        self.sensor, self.instance, self.context = sensor, instance, context
        self.cursor: str | None = None

    def tick(self) -> Any:
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, **self.context)
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data


def texts(slack: SlackRecorder, smtp: SmtpRecorder) -> list[str]:
    """Every message received so far: Slack's, then the e-mails'."""
    return [p.body["text"] for p in slack.messages()] + [m.body for m in smtp.received]


@dataclass
class Alerting:
    """What most alert tests arrange: the stores, an instance, the alert variables, the
    stand-ins that receive the alerts."""

    env: Env
    instance: DagsterInstance
    environ: dict[str, str]
    slack: SlackRecorder
    smtp: SmtpRecorder

    def texts(self) -> list[str]:
        """Every message the stand-ins received so far, so tests need not name both."""
        return texts(self.slack, self.smtp)

    def told(self) -> tuple[int, int]:
        """How many Slack messages and e-mails arrived: each alert must reach both once."""
        return len(self.slack.messages()), len(self.smtp.received)

    def watching(self, sensor: SensorDefinition) -> Ticker:
        """The sensor ticked once, so it watches from here as a running daemon's does."""
        alerts = Ticker(sensor, self.instance)
        alerts.tick()
        return alerts

    def after_a_loss(self) -> Ticker:
        """Stores synced, the recovery-failure sensor watching, then Redis's positions lost."""
        sync_all(self.env)
        alerts = self.watching(build_recovery_failure_sensor(environ=self.environ))
        flush_redis(self.env)
        return alerts


@pytest.fixture
def alerting(
    env: Env,
    instance: DagsterInstance,
    alert_env: dict[str, str],
    slack: SlackRecorder,
    smtp: SmtpRecorder,
) -> Alerting:
    """The fixtures most alert tests take, in one: they arrange every test alike."""
    return Alerting(env, instance, alert_env, slack, smtp)


def test_a_recovery_made_to_fail_sends_one_slack_message_and_one_e_mail_naming_store_and_fix(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = alerting.after_a_loss()  # the sensor starts watching before the loss
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_PURNA")  # PURNA cannot be verified on the API
    failed = recover_sync_positions.execute_in_process(
        instance=alerting.instance, resources=alerting.env.resources, raise_on_error=False
    )
    assert not failed.success
    for _ in range(3):  # the failure is seen on one tick only
        alerts.tick()
    assert alerting.told() == (1, 1)
    for text in alerting.texts():
        assert f"failed (run {failed.run_id[:8]})" in text
        assert "Stores: PURNA" in text
        assert "ECOSYNC_TEST_TOKEN_PURNA" in text  # the cause, with the store's variable
        assert "Fix: Fix the cause named above, then restore the positions: materialize " in text
        assert "`ecosync positions restore`" in text
        assert f"http://dagster.shop.example:3000/runs/{failed.run_id}" in text
    assert (
        alerting.smtp.received[0].message["Subject"].startswith("ecosync: a recovery of the sync")
    )


def test_a_restore_from_the_button_that_fails_is_told_once(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = alerting.after_a_loss()
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_NATUR")
    failed = materialize(
        [restored_sync_positions],
        instance=alerting.instance,
        resources=alerting.env.resources,
        raise_on_error=False,
    )
    assert not failed.success
    alerts.tick()
    alerts.tick()
    assert alerting.told() == (1, 1)
    assert "Stores: NATUR\n" in alerting.texts()[0]


def test_a_half_configured_channel_fails_the_tick_naming_the_variable(
    instance: DagsterInstance,
) -> None:
    alerts = Ticker(build_alerts_sensor(environ={"ECOSYNC_SLACK_TOKEN": "xoxb-1"}), instance)
    with pytest.raises(Exception, match="ECOSYNC_SLACK_TOKEN is set but not ECOSYNC_SLACK_CHANNEL"):
        alerts.tick()


def test_a_successful_recovery_and_other_failed_runs_send_nothing(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, instance = alerting.env, alerting.instance
    alerts = alerting.after_a_loss()
    assert recover_sync_positions.execute_in_process(
        instance=instance, resources=env.resources
    ).success
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_NATUR")
    assert not sync_partition(env, instance, "NATUR").success  # a sync, not a recovery
    alerts.tick()
    assert alerting.texts() == []


def test_three_failed_runs_of_a_store_in_a_row_send_one_message_and_a_fourth_none(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, instance, slack, smtp = alerting.env, alerting.instance, alerting.slack, alerting.smtp
    alerts = alerting.watching(build_alerts_sensor(environ=alerting.environ))
    token = env.environ["ECOSYNC_TEST_TOKEN_NATUR"]
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_NATUR")
    told = []
    for _ in range(4):
        assert not sync_partition(env, instance, "NATUR").success
        alerts.tick()
        told.append(len(slack.messages()))
    assert told == [0, 0, 1, 1]
    assert len(smtp.received) == 1
    for text in texts(slack, smtp):
        assert text.startswith("ecosync: store NATUR failed 3 sync runs in a row")
        assert "Stores: NATUR" in text
        assert "ECOSYNC_TEST_TOKEN_NATUR is not set" in text
        assert "`ecosync sync --store NATUR`" in text
    # A run that syncs the store ends the streak: three more failures are a new one.
    monkeypatch.setenv("ECOSYNC_TEST_TOKEN_NATUR", token)
    assert sync_partition(env, instance, "NATUR").success
    alerts.tick()
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_NATUR")
    for _ in range(3):
        sync_partition(env, instance, "NATUR")
    alerts.tick()
    assert len(slack.messages()) == 2 and len(smtp.received) == 2


def sync_range(env: Env, instance: DagsterInstance) -> Any:
    """A run of the sync job over every store (a partition range), as the schedule's."""
    register_stores(instance, STORES)
    defs = build_definitions(env.settings, resources=env.resources)
    return defs.resolve_job_def("sync_orders").execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: STORES[0], RANGE_END_TAG: STORES[-1]},
        raise_on_error=False,
    )


def test_a_store_failing_in_three_batch_runs_is_told_alone(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = alerting.watching(build_alerts_sensor(environ=alerting.environ))
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_PURNA")  # NATUR syncs in each run, PURNA fails
    for _ in range(3):
        result = sync_range(alerting.env, alerting.instance)
        assert not result.success
        assert [m.partition for m in result.asset_materializations_for_node("new_orders")] == [
            "NATUR"
        ]
        alerts.tick()
    [text] = [p.body["text"] for p in alerting.slack.messages()]
    assert text.startswith("ecosync: store PURNA failed 3 sync runs in a row")
    assert "Stores: PURNA\n" in text
    assert (
        "- PURNA: MissingToken: store PURNA: environment variable ECOSYNC_TEST_TOKEN_PURNA" in text
    )


class Clock:
    """The time the alerts sensor sees, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record_positions_health(env: Env, instance: DagsterInstance) -> float:
    """One cache_loss_sensor tick, its health events recorded as the daemon records them;
    the time of the last one."""
    sensor = build_cache_loss_sensor(recover_sync_positions)
    with build_sensor_context(instance=instance, resources=env.resources) as context:
        data = sensor.evaluate_tick(context)
    for event in data.asset_events:
        instance.report_runless_asset_event(event)
    latest = instance.get_latest_materialization_event(
        data.asset_events[0].asset_key  # store_sync_positions
    )
    assert latest is not None
    return latest.timestamp


def lost_positions_seen(alerting: Alerting, clock: Clock) -> tuple[Ticker, float]:
    """Stores synced, the alerts sensor watching on the clock, the positions lost and that
    seen by the loss sensor: the alerts sensor, and when the loss was seen."""
    sync_all(alerting.env)
    alerts = alerting.watching(build_alerts_sensor(environ=alerting.environ, clock=clock))
    flush_redis(alerting.env)
    return alerts, record_positions_health(alerting.env, alerting.instance)


def test_a_loss_not_mended_within_5_minutes_sends_one_message(alerting: Alerting) -> None:
    clock = Clock()
    alerts, seen = lost_positions_seen(alerting, clock)
    told = []
    for after in (30, 299, 301, 400, 1000):
        clock.now = seen + after
        alerts.tick()
        told.append(len(alerting.slack.messages()))
    assert told == [0, 0, 1, 1, 1]
    assert len(alerting.smtp.received) == 1
    for text in alerting.texts():
        assert text.startswith("ecosync: sync positions lost 5 min ago are not restored yet")
        assert "Stores: NATUR, PURNA" in text
        assert "position_health" in text and "missing" in text
        assert "Fix: cache_loss_sensor launches recover_sync_positions" in text
        assert "`ecosync positions restore`" in text


def test_a_loss_mended_within_5_minutes_sends_nothing(alerting: Alerting) -> None:
    clock = Clock()
    alerts, seen = lost_positions_seen(alerting, clock)
    clock.now = seen + 30
    alerts.tick()
    assert recover_sync_positions.execute_in_process(
        instance=alerting.instance, resources=alerting.env.resources
    ).success  # its last step records the health it leaves: every store healthy
    for after in (301, 1000):
        clock.now = seen + after
        alerts.tick()
    assert alerting.texts() == []


def lose_orders(env: Env, store: str, count: int) -> None:
    """Delete ``count`` of the store's synced orders from the orders table."""
    lost = env.simulator.page_ids(store, 2)[:count]
    runtime = env.runtime()
    try:
        with runtime.engine.begin() as conn:
            conn.execute(
                delete(orders_table).where(
                    orders_table.c.store == store, orders_table.c.order_id.in_(lost)
                )
            )
    finally:
        runtime.close()


def test_a_check_turning_error_sends_one_message_until_it_passes_again(
    alerting: Alerting,
) -> None:
    env, instance, slack, smtp = alerting.env, alerting.instance, alerting.slack, alerting.smtp
    alerts = alerting.watching(build_alerts_sensor(environ=alerting.environ))
    assert sync_partition(env, instance, "NATUR").success
    alerts.tick()
    lose_orders(env, "NATUR", 3)
    told = []
    for _ in range(2):  # ERROR in two runs: told once
        assert sync_partition(env, instance, "NATUR").success
        alerts.tick()
        told.append(len(slack.messages()))
    assert told == [1, 1] and len(smtp.received) == 1
    for text in texts(slack, smtp):
        assert text.startswith(
            "ecosync: check new_orders_complete on new_orders turned ERROR for NATUR"
        )
        assert "Stores: NATUR" in text
        assert "Fix: The reconciliation fetches them: run `ecosync reconcile --store NATUR`" in text


def test_without_a_channel_nothing_is_sent_and_the_log_and_the_tick_say_so(
    env: Env,
    instance: DagsterInstance,
    slack: SlackRecorder,
    smtp: SmtpRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with caplog.at_level(logging.INFO, logger="ecosync_pipeline"):
        defs = build_alerts_definitions(env.settings, environ={})
    assert "no alert channel is configured, so no alert is sent" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ecosync_pipeline"):
        build_alerts_definitions(env.settings, environ={})
    assert "no alert channel" not in caplog.text, "said again by the same process"
    [_, status] = list(defs.sensors)
    alerts = Ticker(status, instance)
    first = alerts.tick()
    assert "no alert channel is configured" in (first.skip_message or "")
    monkeypatch.delenv("ECOSYNC_TEST_TOKEN_NATUR")
    for _ in range(3):
        sync_partition(env, instance, "NATUR")
    told = alerts.tick()
    assert texts(slack, smtp) == []
    assert "store NATUR failed 3 sync runs in a row: no channel configured" in (
        told.skip_message or ""
    )


def test_the_code_location_has_both_alert_sensors(env: Env) -> None:
    names = {s.name for s in build_definitions(env.settings).sensors}
    assert {"recovery_failure_alert", "alerts_sensor"} <= names
