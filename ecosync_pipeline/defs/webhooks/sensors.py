"""webhook_inbox_sensor: apply what the receiver left, show the deliveries, ask for gap syncs.

Each tick (one short transaction per batch, no run started):

1. applies pending deliveries: the receiver's own applier normally does within
   milliseconds, so this only catches what a crashed or stopped receiver left;
2. deletes deliveries applied longer ago than the retention (default 7 days,
   ``ECOSYNC_WEBHOOK_RETENTION_DAYS``); until then ``ecosync webhooks replay`` can
   apply them again;
3. reports, as a runless observation of ``webhook_events`` (on ticks that have any),
   the deliveries received and applied since the last tick, the lag from received to
   applied, the stale ones and the backlog, in total and per store; and records
   ``webhook_deliveries_flowing`` (a runless check evaluation) when the stores it names
   change, or its last result is an hour old;
4. requests a run of the sync for each store where an OrderCreated left a gap above
   the table's last id (one run per store and tick).

A tick that requests no run says what it did in its reason.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.defs.keys import (
    GAP_TAG,
    SYNC_ORDERS_JOB,
    WEBHOOK_DELIVERIES_FLOWING,
    WEBHOOK_EVENTS,
)
from ecosync_pipeline.defs.options import DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.partitions import StoreBatch, register_stores, sync_run_request
from ecosync_pipeline.defs.resources import EcoManagerResource, OrdersDatabaseResource
from ecosync_pipeline.defs.webhooks.assets import (
    NO_WEBHOOK_STORE,
    flowing_evaluation,
    inbox_observation,
    recorded_stores,
    stopped_stores,
)
from ecosync_pipeline.errors import ConfigError, EcosyncError
from ecosync_pipeline.webhooks.apply import ApplyResult, apply_pending
from ecosync_pipeline.webhooks.config import webhook_stores
from ecosync_pipeline.webhooks.health import DeliveryHealth, delivery_health
from ecosync_pipeline.webhooks.inbox import (
    DEFAULT_RETENTION,
    InboxStats,
    inbox_stats,
    purge_applied,
)

GAP_SYNC_SLOT = timedelta(minutes=5)
CHECK_REFRESH_SECONDS = 3600
"""The check is recorded at least this often, even when no store's state changed."""


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


def flowing_events(
    instance: DagsterInstance, health: Sequence[DeliveryHealth], now: datetime
) -> list[AssetCheckEvaluation]:
    """The check as an event when the stores it names differ from its last recorded result,
    or that is an hour old; else nothing (a result every tick would bury the changes)."""
    evaluation = flowing_evaluation(health, now)
    key = AssetCheckKey(WEBHOOK_EVENTS, WEBHOOK_DELIVERIES_FLOWING)
    record = instance.get_latest_asset_check_evaluation_record(key)
    if record is not None and record.event is not None and record.event.dagster_event:
        shown = getattr(record.event.dagster_event.event_specific_data, "metadata", {})
        same = recorded_stores(shown) == stopped_stores(health)
        if same and time.time() - record.event.timestamp < CHECK_REFRESH_SECONDS:
            return []
    return [evaluation]


def read_inbox(
    engine: Engine, stores: Sequence[Store], cursor: str | None
) -> tuple[ApplyResult, dict[str, InboxStats], list[DeliveryHealth], datetime]:
    """Apply what is pending, purge what is old, then read the deliveries since the last
    tick (``cursor``) and each store's health; with the time they were read."""
    done = apply_pending(engine, {s.identifier: s.name for s in stores})
    purge_applied(engine, retention())
    # After applying: this tick's window includes what it applied itself.
    now = datetime.now(timezone.utc)
    ids = [s.identifier for s in stores]
    stats = inbox_stats(engine, ids, _since(cursor), now)
    health = [delivery_health(engine, store, now) for store in ids]
    return done, stats, health, now


def tick_reason(
    stats: Mapping[str, InboxStats], applied: int, stale: int, stopped: Sequence[str]
) -> str:
    """What a tick without a run did, in the operator's words (the tick's reason)."""
    received = sum(s.received for s in stats.values())
    pending = sum(s.pending for s in stats.values())
    line = (
        f"{len(stats)} stores take webhooks: {received} deliveries received since the last "
        f"tick, {pending} waiting to be applied"
    )
    if applied or stale:
        line += f"; applied {applied} the receiver had left ({stale} stale, set aside)"
    line += "; no delivery left a gap to sync"
    if stopped:
        line += (
            f"; deliveries stopped or refused for {', '.join(stopped)} (see "
            "webhook_deliveries_flowing)"
        )
    return line


def build_webhook_inbox_sensor(
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> SensorDefinition:
    """The sensor; it asks the sync job (by name) to run for a store with a gap."""

    @sensor(
        name="webhook_inbox_sensor",
        job_name=SYNC_ORDERS_JOB,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Applies webhook deliveries the receiver left pending, reports the events "
        "received and applied and their lag (in total and per store), warns when a store's "
        "deliveries stop, and asks for a store's sync when a delivery leaves a gap.",
    )
    def webhook_inbox_sensor(
        context: SensorEvaluationContext,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> SensorResult | SkipReason:
        try:
            stores = webhook_stores(ecomanager.stores())
        except EcosyncError as exc:
            return SkipReason(f"cannot read the stores file, nothing done this tick: {exc}")
        if not stores:
            now = datetime.now(timezone.utc)
            return SensorResult(
                skip_reason=NO_WEBHOOK_STORE,
                asset_events=flowing_events(context.instance, [], now),
            )
        # A gap run targets the store's partition: it must exist (as the schedule does).
        register_stores(context.instance, [s.identifier for s in stores])
        try:
            done, stats, health, now = read_inbox(orders_db.engine, stores, context.cursor)
        except EcosyncError as exc:
            return SkipReason(
                f"the orders database could not be read, nothing applied this tick: {exc}"
            )
        if done.total:
            context.log.info(
                "applied %d deliveries left pending (%d stale)", done.applied, done.stale
            )
        runs = [
            _gap_run(store, now) for store, s in stats.items() if s.gaps or done.gaps.get(store)
        ]
        observed = inbox_observation(stats)
        stopped = [h.store for h in health if not h.ok]
        return SensorResult(
            run_requests=runs,
            skip_reason=None if runs else tick_reason(stats, done.applied, done.stale, stopped),
            asset_events=[
                *([observed] if observed is not None else []),
                *flowing_events(context.instance, health, now),
            ],
            cursor=json.dumps({"until": now.isoformat()}),
        )

    return webhook_inbox_sensor
