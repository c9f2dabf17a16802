"""The mirror's jobs and schedules: reconciliation hourly, status refresh every 30 minutes.

Each tick asks for one run per batch of stores (the partitions' own batches), like the
sync schedule; the reconciliation spends a 24th of each store's daily budget a run, so
the hourly schedule covers the whole history of a store within its daily budget.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)

from ecosync_pipeline.defs.keys import (
    ORDER_STATUSES,
    RECONCILE_ORDERS_JOB,
    RECONCILED_ORDERS,
    REFRESH_ORDER_STATUSES_JOB,
    STORE_PARTITIONS_NAME,
)
from ecosync_pipeline.defs.options import DEFAULT_RECONCILE_CRON, DEFAULT_STATUS_CRON
from ecosync_pipeline.defs.partitions import store_batches, store_tags, tick_stamp
from ecosync_pipeline.defs.resources import EcoManagerResource

BATCH_SIZE = 50

reconcile_orders_job = define_asset_job(
    RECONCILE_ORDERS_JOB,
    selection=AssetSelection.assets(RECONCILED_ORDERS),
    executor_def=in_process_executor,
    description="Carry each store's reconciliation sweep on (reconciled_orders).",
)
refresh_order_statuses_job = define_asset_job(
    REFRESH_ORDER_STATUSES_JOB,
    selection=AssetSelection.assets(ORDER_STATUSES),
    executor_def=in_process_executor,
    description="Re-read each store's open orders (order_statuses).",
)


def _build(name: str, job_name: str, key: AssetKey, cron: str, what: str) -> ScheduleDefinition:
    @schedule(
        name=name,
        cron_schedule=cron,
        job_name=job_name,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"{what} ({cron}), {BATCH_SIZE} stores a run.",
    )
    def mirror_schedule(
        context: ScheduleEvaluationContext, ecomanager: EcoManagerResource
    ) -> Iterator[RunRequest]:
        stamp = tick_stamp(context)
        configured = [store.identifier for store in ecomanager.stores()]
        keys = context.instance.get_dynamic_partitions(STORE_PARTITIONS_NAME)
        for batch in store_batches(keys, configured, BATCH_SIZE):
            yield RunRequest(
                run_key=f"{key.to_user_string()}:{batch.first}..{batch.last}:{stamp}",
                partition_key=batch.partition_key,
                tags={**batch.range_tags(), **store_tags(batch.stores)},
            )

    return mirror_schedule


def build_reconcile_schedule(cron: str = DEFAULT_RECONCILE_CRON) -> ScheduleDefinition:
    """One run of reconcile_orders per batch of stores, every ``cron`` tick."""
    return _build(
        "reconcile_schedule", RECONCILE_ORDERS_JOB, RECONCILED_ORDERS, cron, "Reconcile stores"
    )


def build_status_schedule(cron: str = DEFAULT_STATUS_CRON) -> ScheduleDefinition:
    """One run of refresh_order_statuses per batch of stores, every ``cron`` tick."""
    return _build(
        "status_refresh_schedule",
        REFRESH_ORDER_STATUSES_JOB,
        ORDER_STATUSES,
        cron,
        "Refresh open orders' statuses",
    )
