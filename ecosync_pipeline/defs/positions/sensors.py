"""cache_loss_sensor: notice a lost Redis within one tick and launch the recovery job.

Each tick is one Redis round trip (every store's key, the sentinel and the run_id) plus a
read of the stores file. The orders database is asked only when that cannot decide alone
(a store without a key that the sentinel does not list, a key back at page 1), and the
JSON backup only when the sentinel is gone (for the generation it recorded).

positions.loss names every loss with a stable event id; the run_key is built from it, so
the same loss seen on many ticks launches one run, and every later loss (a flush, a
restart, a reset) another, even while an earlier recovery has not run.

One restore at a time: while a restore is under way (its recovery run, or the restore
button's run), no run is requested, and a loss a restore already mended (the sentinel
recreated by a recovery, no store without its key) requests none either.

Every tick also reads the positions' health (positions.health.status_report: the same
round trip, the backup file and one query) and returns it as asset events, a
materialization of store_sync_positions and its three checks: when what it shows (the
statuses, the advice, the last loss's story) differs from the last record (by a sensor
tick, a recovery or a Materialize); when only the figures moved (a sync), at the next
tick but at most once a minute; and at least hourly. A loss it sees first is recorded as
an observation of restored_sync_positions (the start of the loss's story). The daemon
records them, so the UI shows a loss within a tick of it, its end within a tick of the
restore, and the figures within a tick of a sync, without a click.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecosync_pipeline.defs.keys import (
    LOSS_EVENT_TAG,
    LOSS_SEEN_AT_TAG,
    REDIS_STATE_TAG,
    STORE_SYNC_POSITIONS,
)
from ecosync_pipeline.defs.options import DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.positions.health import (
    AssetEvent,
    Standing,
    health_events,
    shown_digest,
)
from ecosync_pipeline.defs.positions.restores import named, restores_under_way, under_way_said
from ecosync_pipeline.defs.positions.story import last_story, lasting, loss_observation, ongoing
from ecosync_pipeline.defs.resources import (
    EcoManagerResource,
    OrdersDatabaseResource,
    PositionsResource,
)
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.factory import cursor_stores
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.positions.judging import positions_digest
from ecosync_pipeline.positions.loss import LossReport, detect
from ecosync_pipeline.positions.model import utc_now
from ecosync_pipeline.storage import StoreSummary, store_summaries

HEALTH_REFRESH_SECONDS = 3600
"""The health is recorded at least this often, even when nothing changed."""
FIGURES_REFRESH_SECONDS = 60
"""Moved positions alone (a sync) are recorded at most this often."""
CURSOR_FIELDS = ("generation", "last_event", "seen_at", "figures_at")


def _moment(iso: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None


@dataclass(frozen=True)
class LossCursor:
    """What the sensor keeps between ticks: the generation known last, the last event,
    when it was first seen, and when moved positions alone were last recorded (ISO 8601)."""

    generation: str | None = None
    last_event: str | None = None
    seen_at: str | None = None
    figures_at: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "LossCursor":
        """The cursor from its JSON form; an empty or unreadable cursor starts afresh."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            **{k: data.get(k) if isinstance(data.get(k), str) else None for k in CURSOR_FIELDS}
        )

    def dump(self) -> str:
        """The JSON form stored by Dagster."""
        return json.dumps({k: getattr(self, k) for k in CURSOR_FIELDS}, sort_keys=True)

    @property
    def seen(self) -> datetime | None:
        """When the last event was first seen, if the cursor says."""
        return _moment(self.seen_at)


@dataclass(frozen=True)
class Tick:
    """What one tick decided: the run to request (or why none), the cursor after it, the
    restore under way (as the advice names it) and the loss's story events."""

    requests: list[RunRequest]
    skip: SkipReason
    cursor: LossCursor
    under_way: str = ""
    story: Sequence[AssetObservation] = ()
    lasting: str = ""
    """The line of the loss under way ('' when none): the story shown meanwhile."""


def run_key_for(event_id: str) -> str:
    """The run_key of the recovery run for one loss event."""
    return f"recover:{event_id}"


def _summaries(orders_db: OrdersDatabaseResource) -> Mapping[str, StoreSummary] | None:
    """Which stores have orders, or None when the database cannot tell us right now."""
    try:
        return store_summaries(orders_db.engine)
    except EcosyncError:
        return None


def build_cache_loss_sensor(
    job: JobDefinition,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> SensorDefinition:
    """The sensor that launches ``job`` (recover_sync_positions) once per cache loss, and
    records the positions' health."""

    @sensor(
        name="cache_loss_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Probes Redis every tick (one round trip) and launches "
        "recover_sync_positions once per loss: a flush, a restart or lost keys; none while "
        "a restore is under way or for a loss a restore already mended.",
    )
    def cache_loss_sensor(
        context: SensorEvaluationContext,
        positions: PositionsResource,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> SensorResult | SkipReason:
        cursor = LossCursor.parse(context.cursor)
        try:
            configured = ecomanager.stores()
        except EcosyncError as exc:
            return SkipReason(f"cannot read the stores: {exc}")
        # Cursor-mode stores keep no position: a loss of Redis costs them nothing.
        stores = [s.identifier for s in configured if s.read_mode == "pages"]
        cursor_only = cursor_stores(configured)
        loss = detect(
            positions.redis.read_many(stores),
            stores,
            cursor=cursor.generation,
            summaries=lambda: _summaries(orders_db),
            backup_generation=lambda: positions.backup.read_many([]).generation,
        )
        decided = _decide(context, cursor, loss, len(stores))
        health, moved = _health(context, positions, decided)
        after = decided.cursor
        if moved:
            after = replace(after, figures_at=utc_now().isoformat())
        return SensorResult(
            run_requests=decided.requests,
            skip_reason=None if decided.requests else _skip(decided.skip, cursor_only),
            cursor=after.dump(),
            asset_events=[*health, *decided.story],
        )

    return cache_loss_sensor


def _skip(skip: SkipReason, cursor_only: Sequence[str]) -> SkipReason:
    """The skip reason, saying that cursor-mode stores have nothing to recover."""
    if not cursor_only:
        return skip
    return SkipReason(
        f"{skip.skip_message}; cursor-mode stores {', '.join(cursor_only)}: no position, "
        "nothing to recover"
    )


def _health(
    context: SensorEvaluationContext, positions: PositionsResource, decided: Tick
) -> tuple[Sequence[AssetEvent], bool]:
    """The health as asset events when what it shows changed or the last record is an
    hour old; when only the figures moved, unless this sensor recorded moved figures less
    than a minute ago (a record for another reason, a loss or a run's, holds none back).
    The second value says the events were recorded for moved figures alone."""
    try:
        report = status_report(positions.chain)
    except EcosyncError as exc:
        # The loss decision stands; the health is recorded on a later tick.
        context.log.warning("positions health not recorded this tick: %s", exc)
        return [], False
    now = utc_now()
    story = decided.lasting
    if not story:
        last = last_story(context.instance)
        story = last.line(now) if last else ""
    standing = Standing(decided.under_way, story)
    latest = context.instance.get_latest_materialization_event(STORE_SYNC_POSITIONS)
    if latest is not None and latest.asset_materialization is not None:
        recorded = latest.asset_materialization.metadata
        shown, figures = recorded.get("fingerprint"), recorded.get("positions_digest")
        age = time.time() - latest.timestamp
        same = shown is not None and shown.value == shown_digest(report, standing)
        still = figures is not None and figures.value == positions_digest(report)
        if same and age < HEALTH_REFRESH_SECONDS:
            if still:
                return [], False
            last = _moment(decided.cursor.figures_at)
            if last is not None and (now - last).total_seconds() < FIGURES_REFRESH_SECONDS:
                return [], False
            return health_events(report, now, standing), True
    return health_events(report, now, standing), False


def _healthy(loss: LossReport, store_count: int) -> str:
    """The skip message of a tick without a loss: a store without a key is never healthy."""
    if not loss.expected:
        return f"no position written to Redis yet for the {store_count} stores: nothing to lose"
    if loss.without_orders:
        return (
            f"{store_count - len(loss.without_orders)} of {store_count} stores healthy; "
            f"without a key and without orders yet (nothing to lose): "
            f"{', '.join(loss.without_orders)}"
        )
    return f"all {store_count} stores healthy"


def _decide(
    context: SensorEvaluationContext,
    cursor: LossCursor,
    loss: LossReport,
    store_count: int,
) -> Tick:
    """The run to request for a loss (or why none), the cursor after this tick, and what
    the health and the story say of it."""
    if loss.unreachable:
        # Keep the loss fields: the next reachable tick compares with what was seen before.
        return Tick(
            [],
            SkipReason(
                f"Redis is unreachable ({loss.error or 'no answer'}); could not look "
                "for a cache loss. Syncs use the JSON backup and the database meanwhile."
            ),
            cursor,
        )
    now = utc_now()
    new = loss.event_id is not None and loss.event_id != cursor.last_event
    seen = now if new else (cursor.seen or now)
    after = replace(
        cursor,
        generation=loss.cursor or None,
        last_event=loss.event_id or cursor.last_event,
        seen_at=seen.isoformat() if new else cursor.seen_at,
    )
    if loss.event_id is None:
        return Tick([], SkipReason(_healthy(loss, store_count)), after)
    if loss.mended:
        last = last_story(context.instance)
        by = (
            f"by run {last.restored_by[:8]}"
            if last is not None and last.event_id == loss.event_id and last.restored_by
            else "by a restore"
        )
        mended = f"loss {loss.event_id} (Redis flushed) already mended {by}"
        return Tick([], SkipReason(f"{mended}; {_healthy(loss, store_count)}"), after)
    if new:
        context.log.info(
            "cache loss %s: Redis %s; without a key: %s; reset: %s",
            loss.event_id,
            loss.redis_state,
            ", ".join(loss.missing) or "none",
            ", ".join(loss.resets) or "none",
        )
    requests, skip, said = _recovery(context, loss, seen)
    story = ongoing(loss, seen)
    shown = story.line(now, said) if lasting(loss) else ""
    observed = [loss_observation(story, now, said)] if new and lasting(loss) else []
    return Tick(requests, skip, after, said, observed, shown)


def _recovery(
    context: SensorEvaluationContext, loss: LossReport, seen: datetime
) -> tuple[list[RunRequest], SkipReason, str]:
    """The recovery run to request for ``loss`` (none while a restore is under way, or when
    its run already ended), why none, and the restore under way as the advice names it."""
    event = str(loss.event_id)
    under_way = restores_under_way(context.instance)
    if under_way:
        return (
            [],
            SkipReason(
                f"{named(under_way[0])} is restoring the positions: no second recovery "
                f"for loss {event} (one restore at a time)"
            ),
            under_way_said(under_way),
        )
    ended = context.instance.get_run_records(
        filters=RunsFilter(tags={LOSS_EVENT_TAG: event}), limit=1
    )
    if ended:
        run = ended[0].dagster_run
        return (
            [],
            SkipReason(
                f"the recovery of loss {event}, run {run.run_id[:8]}, ended "
                f"{run.status.value.lower()} and the loss remains: materialize "
                "restored_sync_positions (its logs say what failed)"
            ),
            "",
        )
    request = RunRequest(
        run_key=run_key_for(event),
        tags={
            LOSS_EVENT_TAG: event,
            REDIS_STATE_TAG: loss.redis_state,
            LOSS_SEEN_AT_TAG: seen.isoformat(),
        },
    )
    said = f"cache_loss_sensor launched recover_sync_positions (run key {request.run_key})"
    return [request], SkipReason(""), f"{said}, restoring them"
