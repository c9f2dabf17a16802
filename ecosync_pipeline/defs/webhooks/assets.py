"""webhook_events: EcoManager's pushed deliveries, for the stores that take them, and their check.

The asset is observed, never materialized by a run: on each tick where deliveries
arrived, were applied or wait, the inbox sensor reports the deliveries received and
applied, the lag between, the backlog and the deliveries set aside as stale or refused,
in total and per store that had any. ``webhook_deliveries_flowing`` warns when a store's
deliveries stopped while polling still finds new orders, or an authentic delivery of the
last day was kept refused; the sensor records it when the stores it names change (at
least hourly), and it can be run by hand too.

Neither is partitioned: only the stores with a webhook secret take deliveries, and a
partition per store of the file would show every other store as a gap ("0% filled",
a check never evaluated) although nothing is wrong with it.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetObservation,
    AssetSpec,
    MetadataValue,
    asset_check,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.keys import WEBHOOK_DELIVERIES_FLOWING, WEBHOOK_EVENTS
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.resources import EcoManagerResource, OrdersDatabaseResource
from ecosync_pipeline.webhooks.config import webhook_stores
from ecosync_pipeline.webhooks.health import DeliveryHealth, delivery_health
from ecosync_pipeline.webhooks.inbox import InboxStats

NO_WEBHOOK_STORE = (
    "no store takes webhooks (none has webhook_secret_env or webhook_secret_file): "
    "nothing to watch; every store's orders come from the scheduled sync"
)
STATS_COLUMNS = (
    "store",
    "received",
    "applied",
    "stale",
    "gaps",
    "refused",
    "pending",
    "lag_p50_seconds",
    "lag_max_seconds",
)
HEALTH_COLUMNS = (
    "store",
    "last_delivery_at",
    "orders_polled_without_delivery",
    "stopped",
    "deliveries_refused",
)


def webhook_events_spec() -> AssetSpec:
    """The observed asset of webhook deliveries (all the stores that take them)."""
    return AssetSpec(
        key=WEBHOOK_EVENTS,
        group_name="orders",
        kinds={"python", "sql"},
        description="Signed webhook deliveries from EcoManager, stored in the inbox table and "
        "applied to the orders table, for the stores that take webhooks. Observed by "
        "webhook_inbox_sensor on every tick that has deliveries: events received and "
        "applied, lag from received to applied, backlog; in total and per store.",
    )


def _active(s: InboxStats) -> bool:
    return bool(s.received or s.applied or s.stale or s.gaps or s.refused or s.pending)


def inbox_observation(stats: Mapping[str, InboxStats]) -> AssetObservation | None:
    """The deliveries since the last tick, in total and per store that had any (counts and
    seconds only, no order content); None when no store received, applied or holds any."""
    active = [s for s in stats.values() if _active(s)]
    if not active:
        return None
    lags = [s.lag_max for s in active if s.lag_max is not None]
    rows = [
        {
            "store": s.store,
            "received": s.received,
            "applied": s.applied,
            "stale": s.stale,
            "gaps": s.gaps,
            "refused": s.refused,
            "pending": s.pending,
            "lag_p50_seconds": s.lag_p50,
            "lag_max_seconds": s.lag_max,
        }
        for s in sorted(active, key=lambda s: s.store)
    ]
    return AssetObservation(
        asset_key=WEBHOOK_EVENTS,
        metadata={
            "events_received": MetadataValue.int(sum(s.received for s in active)),
            "events_applied": MetadataValue.int(sum(s.applied for s in active)),
            "events_stale": MetadataValue.int(sum(s.stale for s in active)),
            "gaps": MetadataValue.int(sum(s.gaps for s in active)),
            "events_refused": MetadataValue.int(sum(s.refused for s in active)),
            "pending": MetadataValue.int(sum(s.pending for s in active)),
            "lag_max_seconds": MetadataValue.float(max(lags, default=0.0)),
            "stores_with_deliveries": MetadataValue.int(len(active)),
            "stores": table(STATS_COLUMNS, rows),
        },
    )


def stopped_stores(health: Sequence[DeliveryHealth]) -> dict[str, tuple[bool, bool]]:
    """Each store that takes webhooks, whether its deliveries stopped and whether some were
    refused: what the check says, so a change of it is worth recording."""
    return {h.store: (h.stopped, h.refused > 0) for h in health}


def recorded_stores(metadata: Mapping[str, Any]) -> dict[str, tuple[bool, bool]] | None:
    """The same, read back from a recorded result's ``stores`` table (None: unreadable)."""
    rows = getattr(metadata.get("stores"), "records", None)
    if rows is None:
        return None
    return {
        str(r.data.get("store")): (
            bool(r.data.get("stopped")),
            bool(r.data.get("deliveries_refused")),
        )
        for r in rows
    }


def _health_rows(health: Sequence[DeliveryHealth]) -> list[dict[str, Any]]:
    return [
        {
            "store": h.store,
            "last_delivery_at": (
                h.last_received_at.isoformat(timespec="seconds") if h.last_received_at else "never"
            ),
            "orders_polled_without_delivery": h.polled_since,
            "stopped": h.stopped,
            "deliveries_refused": h.refused,
        }
        for h in sorted(health, key=lambda h: (h.ok, h.store))
    ]


def flowing_result(health: Sequence[DeliveryHealth], now: datetime) -> AssetCheckResult:
    """The check's result over every store that takes webhooks: WARN naming each store
    whose deliveries stopped, or of which some were refused, with what to do."""
    failing = [h for h in health if not h.ok]
    if not health:
        description = NO_WEBHOOK_STORE
    elif failing:
        description = f"{len(failing)} of {len(health)} stores that take webhooks: " + " ".join(
            h.describe(now) for h in failing
        )
    else:
        description = (
            f"all {len(health)} stores that take webhooks: deliveries keep up with the "
            "orders polling finds"
        )
    return AssetCheckResult(
        asset_key=WEBHOOK_EVENTS,
        check_name=WEBHOOK_DELIVERIES_FLOWING,
        passed=not failing,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "stores_taking_webhooks": MetadataValue.int(len(health)),
            "stores_stopped": MetadataValue.int(sum(h.stopped for h in health)),
            "stores_with_refused_deliveries": MetadataValue.int(sum(h.refused > 0 for h in health)),
            "stores": table(HEALTH_COLUMNS, _health_rows(health)),
        },
        description=description,
    )


def flowing_evaluation(health: Sequence[DeliveryHealth], now: datetime) -> AssetCheckEvaluation:
    """The check's result as a runless evaluation (from the sensor)."""
    result = flowing_result(health, now)
    return AssetCheckEvaluation(
        asset_key=WEBHOOK_EVENTS,
        check_name=WEBHOOK_DELIVERIES_FLOWING,
        passed=result.passed,
        severity=result.severity,
        metadata=result.metadata,
        description=result.description,
    )


def build_flowing_check() -> AssetChecksDefinition:
    """webhook_deliveries_flowing, run by hand (the sensor records it when it changes)."""

    @asset_check(
        asset=WEBHOOK_EVENTS,
        name=WEBHOOK_DELIVERIES_FLOWING,
        description="WARN naming each store whose deliveries stopped while polling still "
        "found new orders after its last one (EcoManager disables a webhook after a day of "
        "failed retries), or of which an authentic delivery of the last day was kept "
        "refused. Over the stores that take webhooks.",
    )
    def webhook_deliveries_flowing(
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> AssetCheckResult:
        now = datetime.now(timezone.utc)
        with reported():
            stores = webhook_stores(ecomanager.stores())
            health = [delivery_health(orders_db.engine, s.identifier, now) for s in stores]
        return flowing_result(health, now)

    return webhook_deliveries_flowing
