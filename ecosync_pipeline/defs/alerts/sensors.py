"""The alert sensors: each alert sent once, to the channels of ecosync_pipeline.alerts.

recovery_failure_alert  a run failure sensor: each failed recovery (the job, or a restore
                        from the UI) is told once. Dagster keeps its place in the run
                        events in the sensor's cursor, in the instance: a restarted daemon
                        neither repeats a message nor skips a failure that happened while
                        it was down.
alerts_sensor           reads the runs that ended and the checks recorded since its last
                        tick and tells a store's third failed run in a row, a check turning
                        ERROR, and a loss of positions not mended within 5 minutes. What it
                        remembers (failed runs in a row, failing checks and since when,
                        whether the loss was told) is its cursor, in the instance too: not
                        in Redis, whose loss is one of the things it tells.

A channel that fails is reported on the tick with its reason; the message is not sent
again, so the channels that took it never get it twice.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import time
from collections.abc import Callable, Mapping, Sequence

from dagster import (
    DagsterEvent,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from ecosync_pipeline.alerts import (
    AlertNotSent,
    AlertRules,
    AlertSettings,
    AlertState,
    Delivery,
    Notifier,
    Observation,
    recovery_failed,
)
from ecosync_pipeline.defs.alerts.observations import (
    failure_reasons,
    failure_texts,
    last_run_end,
    run_observations,
    runless_checks,
    runless_cursor,
    runs_ended_after,
)
from ecosync_pipeline.defs.keys import (
    CACHE_HEALTH,
    POSITION_HEALTH,
    RECOVER_SYNC_POSITIONS_JOB,
    RECOVERY_TAG,
    RESTORED_SYNC_POSITIONS,
    STORE_SYNC_POSITIONS,
)

DEFAULT_INTERVAL_SECONDS = 30
RUNS_PER_TICK = 200
"""Ended runs read in one tick; more wait for the next tick (nothing is skipped)."""
RUNLESS_PER_TICK = 1000
RECOVERY_JOB = RECOVER_SYNC_POSITIONS_JOB
RESTORE_STEP = RESTORED_SYNC_POSITIONS.to_user_string()
"""The step of the restore button (the asset's own name)."""
LOSS_CHECKS = tuple(
    f"{STORE_SYNC_POSITIONS.to_user_string()}:{name}" for name in (POSITION_HEALTH, CACHE_HEALTH)
)
"""Their ERROR is a loss of positions, which the automatic recovery mends: told only when
it lasts the grace, not the moment it is seen."""


def ui_link(settings: AlertSettings) -> Callable[[str], str | None]:
    """A function giving the Dagster UI's address of a path (None without ECOSYNC_DAGSTER_URL)."""

    def link(path: str) -> str | None:
        return f"{settings.dagster_url}{path}" if settings.dagster_url else None

    return link


def is_recovery(run: DagsterRun, failures: Sequence[DagsterEvent]) -> bool:
    """A run restoring the positions: the recovery job, or restored_sync_positions
    materialized from the UI or the CLI (by its selection, or the step that failed)."""
    return (
        run.job_name == RECOVERY_JOB
        or run.tags.get(RECOVERY_TAG) == "true"
        or RESTORED_SYNC_POSITIONS in (run.asset_selection or ())
        or any(e.step_key == RESTORE_STEP for e in failures)
    )


def build_recovery_failure_sensor(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> SensorDefinition:
    """The run failure sensor telling each failed recovery once (``environ``: the
    variables alerts read, default os.environ)."""

    @run_failure_sensor(
        name="recovery_failure_alert",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Tells each failed recovery of the sync positions once, to Slack and by "
        "e-mail (ECOSYNC_SLACK_*, ECOSYNC_SMTP_*), naming the stores and the fix.",
    )
    def recovery_failure_alert(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        failures = context.get_step_failure_events()
        if not is_recovery(run, failures):
            return
        settings = AlertSettings.from_env(environ)
        alert = recovery_failed(
            run.run_id,
            failure_reasons(failures),
            failure_texts(failures),
            ui_link(settings)(f"/runs/{run.run_id}"),
        )
        delivery = Notifier.from_settings(settings, environ).send(alert)
        if delivery.failed:
            # Reported on the tick (Dagster moves past the run all the same): not sent again.
            name, reason = next(iter(delivery.failed.items()))
            raise AlertNotSent(name, reason)
        context.log.info(_told(delivery, settings))

    return recovery_failure_alert


def _told(delivery: Delivery, settings: AlertSettings) -> str:
    if settings.configured:
        return f"alert {delivery.summary()}"
    return f"alert not sent: {settings.describe()}. It said: {delivery.alert.text()}"


def _observe(context: SensorEvaluationContext, state: AlertState) -> list[Observation]:
    """The observations since the state's place in both streams; the place moves on."""
    instance = context.instance
    found: list[Observation] = []
    ends = runs_ended_after(instance, state.runs_after or 0, RUNS_PER_TICK)
    for end in ends:
        found += run_observations(instance, end)
    if ends:
        state.runs_after = ends[-1].storage_id
    runless, state.runless_after = runless_checks(instance, state.runless_after, RUNLESS_PER_TICK)
    return found + runless


def build_alerts_sensor(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> SensorDefinition:
    """The status sensor telling failing stores, checks turning ERROR and losses not
    mended; ``clock`` is the time the loss's grace is measured against."""

    @sensor(
        name="alerts_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Tells, once each, to Slack and by e-mail: a store failing 3 sync runs "
        "in a row, a check turning ERROR, a loss of positions not mended in 5 minutes.",
    )
    def alerts_sensor(context: SensorEvaluationContext) -> SensorResult:
        settings = AlertSettings.from_env(environ)
        state = AlertState.parse(context.cursor)
        if state.runs_after is None:
            state.runs_after = last_run_end(context.instance)
            state.runless_after = runless_cursor(context.instance)
            return SensorResult(
                skip_reason=SkipReason(
                    f"watching from now on: runs that end and checks recorded from this tick "
                    f"on are looked at; {settings.describe()}"
                ),
                cursor=state.dump(),
            )
        observations = _observe(context, state)
        rules = AlertRules(LOSS_CHECKS, link=ui_link(settings))
        alerts = rules.observe(state, observations) + rules.due(state, clock())
        notifier = Notifier.from_settings(settings, environ)
        told = []
        for alert in alerts:
            delivery = notifier.send(alert)
            line = _told(delivery, settings)
            (context.log.error if delivery.failed else context.log.info)(line)
            told.append(delivery.summary())
        return SensorResult(
            skip_reason=SkipReason(_summary(told, state, len(observations))),
            cursor=state.dump(),
        )

    return alerts_sensor


def _summary(told: list[str], state: AlertState, looked_at: int) -> str:
    """The tick in words: what was told, else what is being watched."""
    if told:
        return "; ".join(told)
    watching = [f"{looked_at} results looked at, nothing to tell"]
    if state.streaks:
        failing = ", ".join(f"{s} ({n} in a row)" for s, n in sorted(state.streaks.items()))
        watching.append(f"failed sync runs: {failing}")
    if state.errors:
        watching.append(f"checks failing at ERROR: {', '.join(sorted(state.errors))}")
    return "; ".join(watching)
