"""The order sync job and its schedule: every store every 15 minutes, in batches of stores.

Each tick registers the stores the file lists (a store added since the last tick gets
its partition now, with no reload), cuts them into batches of consecutive partitions and
asks for one run per batch. A run costs a process start (seconds of imports), a store
with nothing new one or two API calls: batching is what lets one machine serve a
thousand stores a tick.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)

from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_PARTITIONS_NAME, SYNC_ORDERS_JOB
from ecosync_pipeline.defs.options import DEFAULT_SYNC_CRON
from ecosync_pipeline.defs.partitions import (
    register_stores,
    store_batches,
    sync_run_request,
    tick_stamp,
)
from ecosync_pipeline.defs.resources import EcoManagerResource
from ecosync_pipeline.sync.batch import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS

sync_orders_job = define_asset_job(
    SYNC_ORDERS_JOB,
    # new_orders with both its checks, evaluated per store in the asset's own step.
    selection=AssetSelection.assets(NEW_ORDERS),
    # One process per run: the step runs in the run's own process, so a run does not pay
    # for a second interpreter importing Dagster and the code location.
    executor_def=in_process_executor,
    description="Sync the new orders of one store or a batch of stores (new_orders for a "
    "partition or a range of partitions, with its completeness and freshness checks).",
)


def build_order_sync_schedule(
    cron: str = DEFAULT_SYNC_CRON,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
    runs: int = 1,
) -> ScheduleDefinition:
    """A schedule asking for one run of the sync job per batch of ``batch_size`` stores a
    tick, and for at least ``runs`` runs when there are enough stores (one per core).

    Inside a run, ``workers`` stores sync at once, each under its own lock: a store still
    held by a run of the previous tick fails alone (StoreLocked) and the others go on.
    """

    @schedule(
        name="order_sync_schedule",
        cron_schedule=cron,
        job_name=SYNC_ORDERS_JOB,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sync every store's new orders ({cron}), at most {batch_size} stores a "
        f"run and at least {runs} runs when there are enough stores, {workers} at a time "
        "within a run.",
    )
    def order_sync_schedule(
        context: ScheduleEvaluationContext, ecomanager: EcoManagerResource
    ) -> Iterator[RunRequest]:
        stamp = tick_stamp(context)
        configured = [store.identifier for store in ecomanager.stores()]
        # Schedules cannot return partition requests as sensors do; a store added since
        # the sensor's last tick is registered here so that this tick syncs it.
        added = register_stores(context.instance, configured)
        if added:
            context.log.info("registered %d new stores: %s", len(added), ", ".join(added))
        keys = context.instance.get_dynamic_partitions(STORE_PARTITIONS_NAME)
        for batch in store_batches(keys, configured, batch_size, runs):
            yield sync_run_request(batch, stamp, workers)

    return order_sync_schedule
