"""webhook_inbox_sensor: apply what the receiver left, show the deliveries, ask for gap syncs.

Each tick (one short transaction per batch, no run started):

1. applies pending deliveries: the receiver's own applier normally does within
   milliseconds, so this only catches what a crashed or stopped receiver left;
2. deletes deliveries applied longer ago than the retention (default 7 days,
   ``ECOSYNC_WEBHOOK_RETENTION_DAYS``); until then ``ecosync webhooks replay`` can
   apply them again;
3. reports per store, as runless observations of ``webhook_events``, the deliveries
   received and applied since the last tick, the lag from received to applied (median
   and max), the stale ones and the backlog, and evaluates
   ``webhook_deliveries_flowing`` (runless check evaluations);
4. requests a run of the sync for each store where an OrderCreated left a gap above
   the table's last id (one run per store and tick).
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import json
import os
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecosync_pipeline.defs.keys import GAP_TAG, SYNC_ORDERS_JOB, WEBHOOK_EVENTS
from ecosync_pipeline.defs.options import DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.partitions import StoreBatch, register_stores, sync_run_request
from ecosync_pipeline.defs.resources import EcoManagerResource, OrdersDatabaseResource
from ecosync_pipeline.defs.webhooks.assets import flowing_evaluation
from ecosync_pipeline.errors import ConfigError, EcosyncError
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.config import webhook_stores
from ecosync_pipeline.webhooks.health import delivery_health
from ecosync_pipeline.webhooks.inbox import (
    DEFAULT_RETENTION,
    InboxStats,
    inbox_stats,
    purge_applied,
)

GAP_SYNC_SLOT = timedelta(minutes=5)


def retention() -> timedelta:
    """How long applied deliveries are kept (ECOSYNC_WEBHOOK_RETENTION_DAYS, default 7)."""
    raw = os.environ.get("ECOSYNC_WEBHOOK_RETENTION_DAYS")
    if not raw:
        return DEFAULT_RETENTION
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days <= 0:
        raise ConfigError(
            f"ECOSYNC_WEBHOOK_RETENTION_DAYS={raw!r} is invalid: give a number of days above 0"
        )
    return timedelta(days=days)


def observation(stats: InboxStats) -> AssetObservation:
    """One store's deliveries since the last tick (counts and seconds only, no order content)."""
    return AssetObservation(
        asset_key=WEBHOOK_EVENTS,
        partition=stats.store,
        metadata={
            "events_received": MetadataValue.int(stats.received),
            "events_applied": MetadataValue.int(stats.applied),
            "events_stale": MetadataValue.int(stats.stale),
            "gaps": MetadataValue.int(stats.gaps),
            "events_refused": MetadataValue.int(stats.refused),
            "pending": MetadataValue.int(stats.pending),
            "lag_p50_seconds": MetadataValue.float(stats.lag_p50 or 0.0),
            "lag_max_seconds": MetadataValue.float(stats.lag_max or 0.0),
        },
    )


def _gap_run(store: str, now: datetime) -> RunRequest:
    """A sync run of one store, because a delivery left a gap above its last id.

    The run_key names the 5-minute slot, so a store whose ids are sparse (every new id a
    "gap") is synced at most once a slot, not on every tick.
    """
    slot = int(now.timestamp() // GAP_SYNC_SLOT.total_seconds())
    request = sync_run_request(StoreBatch((store,)), f"webhook-gap:{slot}", 1)
    return request.with_replaced_attrs(tags={**request.tags, GAP_TAG: "1"})


def _since(cursor: str | None) -> datetime | None:
    try:
        raw = json.loads(cursor or "{}").get("until")
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except (ValueError, AttributeError):
        return None


def build_webhook_inbox_sensor(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> SensorDefinition:
    """The sensor; it asks the sync job (by name) to run for a store with a gap."""

    @sensor(
        name="webhook_inbox_sensor",
        job_name=SYNC_ORDERS_JOB,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Applies webhook deliveries the receiver left pending, reports per store "
        "the events received and applied and their lag, warns when deliveries stop, and "
        "asks for a store's sync when a delivery leaves a gap.",
    )
    def webhook_inbox_sensor(
        context: SensorEvaluationContext,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> SensorResult | SkipReason:
        try:
            stores = webhook_stores(ecomanager.stores())
        except EcosyncError as exc:
            return SkipReason(f"cannot read the stores: {exc}")
        if not stores:
            return SkipReason(
                "no store takes webhooks (none has webhook_secret_env or webhook_secret_file)"
            )
        # Observations name a store's partition: it must exist (as the schedule does).
        register_stores(context.instance, [s.identifier for s in stores])
        try:
            engine = orders_db.engine
            done = apply_pending(engine, {s.identifier: s.name for s in stores})
            purge_applied(engine, retention())
            # After applying: this tick's window includes what it applied itself.
            now = datetime.now(timezone.utc)
            ids = [s.identifier for s in stores]
            stats = inbox_stats(engine, ids, _since(context.cursor), now)
            health = [delivery_health(engine, store, now) for store in ids]
        except EcosyncError as exc:
            return SkipReason(f"the orders database could not be read: {exc}")
        if done.total:
            context.log.info(
                "applied %d deliveries left pending (%d stale)", done.applied, done.stale
            )
        runs = [
            _gap_run(store, now) for store, s in stats.items() if s.gaps or done.gaps.get(store)
        ]
        return SensorResult(
            run_requests=runs,
            asset_events=[observation(s) for s in stats.values()]
            + [flowing_evaluation(h, now) for h in health],
            cursor=json.dumps({"until": now.isoformat()}),
        )

    return webhook_inbox_sensor
