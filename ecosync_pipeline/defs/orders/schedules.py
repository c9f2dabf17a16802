"""The order sync job and its schedule: one run per store every 15 minutes by default."""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from ecosync_pipeline.defs.orders.assets import NEW_ORDERS

if TYPE_CHECKING:
    # What define_asset_job returns; Dagster does not export the name itself.
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

DEFAULT_SYNC_CRON = "*/15 * * * *"
STORE_TAG = "ecosync/store"

sync_orders_job = define_asset_job(
    "sync_orders",
    selection=AssetSelection.assets(NEW_ORDERS),
    description="Sync one store's new orders (new_orders for one partition, with its checks).",
)


def build_order_sync_schedule(
    job: "UnresolvedAssetJobDefinition",
    partitions: PartitionsDefinition,
    cron: str = DEFAULT_SYNC_CRON,
) -> ScheduleDefinition:
    """A schedule asking for one run of ``job`` per store partition on every tick.

    Each store is its own run, so a slow or failing store never holds the others back;
    the run queue (dagster.yaml) keeps one run per store and a few runs in all.
    """

    @schedule(
        name="order_sync_schedule",
        cron_schedule=cron,
        job=job,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sync every store's new orders ({cron}); one run per store.",
    )
    def order_sync_schedule(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        tick = context.scheduled_execution_time
        stamp = tick.isoformat() if tick is not None else "manual"
        for store in partitions.get_partition_keys():
            yield RunRequest(
                # A tick evaluated twice (daemon restart) must not start a store twice.
                run_key=f"{store}:{stamp}",
                partition_key=store,
                tags={STORE_TAG: store},
            )

    return order_sync_schedule
