"""webhook_events: EcoManager's pushed deliveries, one partition per store, and their check.

The asset is observed, never materialized by a run: the inbox sensor reports, per store
and tick, the deliveries received and applied, the lag between, the backlog and the
deliveries set aside as stale. ``webhook_deliveries_flowing`` warns when the deliveries
stopped while polling still finds new orders; the sensor evaluates it on every tick (a
runless check evaluation), and it can be run by hand too.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetSpec,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.keys import WEBHOOK_DELIVERIES_FLOWING, WEBHOOK_EVENTS
from ecosync_pipeline.defs.resources import OrdersDatabaseResource
from ecosync_pipeline.webhooks.health import DeliveryHealth, delivery_health


def webhook_events_spec(partitions: PartitionsDefinition) -> AssetSpec:
    """The observed asset of webhook deliveries, partitioned like new_orders."""
    return AssetSpec(
        key=WEBHOOK_EVENTS,
        partitions_def=partitions,
        group_name="orders",
        kinds={"python", "sql"},
        description="Signed webhook deliveries from EcoManager, stored in the inbox table and "
        "applied to the orders table. Observed by webhook_inbox_sensor on every tick: events "
        "received and applied, lag from received to applied, backlog.",
    )


def health_metadata(health: DeliveryHealth, now: datetime) -> dict[str, MetadataValue]:
    """Numbers and times only: no order content reaches the metadata."""
    silent = (now - health.last_received_at).total_seconds() if health.last_received_at else -1.0
    return {
        "orders_polled_without_delivery": MetadataValue.int(health.polled_since),
        "deliveries_refused": MetadataValue.int(health.refused),
        "seconds_since_last_delivery": MetadataValue.float(silent),
        "last_delivery_at": MetadataValue.text(
            health.last_received_at.isoformat(timespec="seconds")
            if health.last_received_at
            else "never"
        ),
    }


def flowing_evaluation(health: DeliveryHealth, now: datetime) -> AssetCheckEvaluation:
    """The check's result for one store, as a runless evaluation (from the sensor)."""
    return AssetCheckEvaluation(
        asset_key=WEBHOOK_EVENTS,
        check_name=WEBHOOK_DELIVERIES_FLOWING,
        passed=health.ok,
        severity=AssetCheckSeverity.WARN,
        metadata=health_metadata(health, now),
        description=health.describe(now),
        partition=health.store,
    )


def build_flowing_check(partitions: PartitionsDefinition) -> AssetChecksDefinition:
    """webhook_deliveries_flowing, run by hand for one store (the sensor runs it every tick)."""

    @asset_check(
        asset=WEBHOOK_EVENTS,
        name=WEBHOOK_DELIVERIES_FLOWING,
        partitions_def=partitions,
        description="WARN when polling found new orders after the store's last webhook "
        "delivery (EcoManager disables a webhook after a day of failed retries), or when "
        "an authentic delivery of the last day was kept refused.",
    )
    def webhook_deliveries_flowing(
        context: AssetCheckExecutionContext, orders_db: OrdersDatabaseResource
    ) -> AssetCheckResult:
        store = context.partition_key
        now = datetime.now(timezone.utc)
        with reported(store):
            health = delivery_health(orders_db.engine, store, now)
        return AssetCheckResult(
            passed=health.ok,
            severity=AssetCheckSeverity.WARN,
            metadata=health_metadata(health, now),
            description=health.describe(now),
        )

    return webhook_deliveries_flowing
