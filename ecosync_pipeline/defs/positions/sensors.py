"""cache_loss_sensor: notice a lost Redis within one tick and launch the recovery job.

Each tick is one Redis round trip (every store's key, the sentinel and the run_id) plus a
read of the stores file. The orders database is asked only when that cannot decide alone
(a store without a key that the sentinel does not list, a key back at page 1), and the
JSON backup only when the sentinel is gone (for the generation it recorded).

positions.loss names every loss with a stable event id; the run_key is built from it, so
the same loss seen on many ticks launches one run, and every later loss (a flush, a
restart, a reset) another, even while an earlier recovery has not run.

Every tick also reads the positions' health (positions.health.status_report: the same
round trip, the backup file and one query) and, when what it shows differs from the
last recorded health (by a sensor tick, a recovery or a Materialize) or that is an hour
old, returns it as asset events: a materialization of store_sync_positions and its three
checks. The daemon records them, so the UI shows a loss within a tick of it, and its end
within a tick of the restore, without a click.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecosync_pipeline.defs.keys import LOSS_EVENT_TAG, REDIS_STATE_TAG, STORE_SYNC_POSITIONS
from ecosync_pipeline.defs.options import DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.positions.health import AssetEvent, health_events
from ecosync_pipeline.defs.resources import (
    EcoManagerResource,
    OrdersDatabaseResource,
    PositionsResource,
)
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.factory import cursor_stores
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.positions.judging import fingerprint
from ecosync_pipeline.positions.loss import LossReport, detect
from ecosync_pipeline.positions.model import utc_now
from ecosync_pipeline.storage import StoreSummary, store_summaries

HEALTH_REFRESH_SECONDS = 3600
"""The health is recorded at least this often, even when nothing changed."""
CURSOR_FIELDS = ("generation", "last_event")


@dataclass(frozen=True)
class LossCursor:
    """What the sensor keeps between ticks: the generation known last, the last event."""

    generation: str | None = None
    last_event: str | None = None

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
        "recover_sync_positions once per loss: a flush, a restart or lost keys.",
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
        requests, skip, after = _decide(context, cursor, loss, len(stores))
        if cursor_only and not requests:
            skip = SkipReason(
                f"{skip.skip_message}; cursor-mode stores {', '.join(cursor_only)}: no "
                "position, nothing to recover"
            )
        return SensorResult(
            run_requests=requests,
            skip_reason=None if requests else skip,
            cursor=after.dump(),
            asset_events=list(_health(context, positions)),
        )

    return cache_loss_sensor


def _health(context: SensorEvaluationContext, positions: PositionsResource) -> Sequence[AssetEvent]:
    """The health as asset events when it differs from the last recorded (or is an hour old)."""
    try:
        report = status_report(positions.chain)
    except EcosyncError as exc:
        # The loss decision stands; the health is recorded on a later tick.
        context.log.warning("positions health not recorded this tick: %s", exc)
        return []
    latest = context.instance.get_latest_materialization_event(STORE_SYNC_POSITIONS)
    if latest is not None and latest.asset_materialization is not None:
        recorded = latest.asset_materialization.metadata.get("fingerprint")
        fresh = time.time() - latest.timestamp < HEALTH_REFRESH_SECONDS
        if fresh and recorded is not None and recorded.value == fingerprint(report):
            return []
    return health_events(report, utc_now())


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
) -> tuple[list[RunRequest], SkipReason, LossCursor]:
    """The run to request for a loss (or why none), and the cursor after this tick."""
    if loss.unreachable:
        # Keep the loss fields: the next reachable tick compares with what was seen before.
        return (
            [],
            SkipReason(
                f"Redis is unreachable ({loss.error or 'no answer'}); could not look "
                "for a cache loss. Syncs use the JSON backup and the database meanwhile."
            ),
            cursor,
        )
    after = replace(
        cursor,
        generation=loss.cursor or None,
        last_event=loss.event_id or cursor.last_event,
    )
    if loss.event_id is None:
        return [], SkipReason(_healthy(loss, store_count)), after
    context.log.info(
        "cache loss %s: Redis %s; without a key: %s; reset: %s",
        loss.event_id,
        loss.redis_state,
        ", ".join(loss.missing) or "none",
        ", ".join(loss.resets) or "none",
    )
    request = RunRequest(
        run_key=run_key_for(loss.event_id),
        tags={LOSS_EVENT_TAG: loss.event_id, REDIS_STATE_TAG: loss.redis_state},
    )
    return [request], SkipReason(""), after
