"""new_orders_complete: per store, the database holds every order the API serves up to
the last synced id.

"Seen" is counted on the API, not by the sync: the number of orders EcoManager serves
with an id up to the store's last order id in the database, found from the one page
that holds that id (every page before it is full). Counting on the API side catches
what the sync itself cannot see:

- fewer orders in the database than the API serves (ERROR): orders were skipped, the
  failure a position that overshoots (id / 20, a wrong page) causes silently, or rows
  were lost from the database;
- more in the database than the API serves (WARN): orders deleted on EcoManager after
  they were synced; they stay in the database and shift later pages towards page 1.

It costs one API call when the database's count names the right page, a few more
(logarithmic) when it does not.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.orders.assets import NEW_ORDERS
from ecosync_pipeline.defs.resources import EcosyncResource
from ecosync_pipeline.positions.database_layer import page_hint
from ecosync_pipeline.positions.recovery import ServedCount, count_served_through
from ecosync_pipeline.storage import StoreSummary, store_summary

MISSING_ACTION = (
    "Orders the API serves are not in the database. Re-read the store from before the gap: "
    "find the first missing id by comparing the store's ids with the API, then run the sync "
    "from that page (the upsert makes re-reading harmless). Check the position history "
    "(store_sync_positions) for a position that jumped ahead."
)
DELETED_ACTION = (
    "Orders in the database are no longer served by EcoManager (deleted there). Nothing is "
    "lost; keep them or mark them deleted in the back office."
)


def completeness_result(summary: StoreSummary, served: ServedCount) -> AssetCheckResult:
    """Compare the database's count with the API's count up to the same last order id."""
    stored = summary.order_count
    difference = served.served - stored
    metadata = {
        "orders_in_database": MetadataValue.int(stored),
        "orders_served_by_api": MetadataValue.int(served.served),
        "missing_from_database": MetadataValue.int(max(0, difference)),
        "deleted_upstream": MetadataValue.int(max(0, -difference)),
        "last_order_id": MetadataValue.int(summary.last_order_id or 0),
        "page_of_last_order": MetadataValue.int(served.page),
        "api_calls": MetadataValue.int(served.fetches),
    }
    store = summary.store
    if difference == 0:
        return AssetCheckResult(
            passed=True,
            metadata=metadata,
            description=f"store {store}: all {stored} orders up to id "
            f"{summary.last_order_id} are in the database",
        )
    if difference > 0:
        metadata["what_to_do"] = MetadataValue.md(MISSING_ACTION)
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=f"store {store}: the API serves {served.served} orders up to id "
            f"{summary.last_order_id} but the database holds {stored}: {difference} missing. "
            f"{MISSING_ACTION}",
        )
    metadata["what_to_do"] = MetadataValue.md(DELETED_ACTION)
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"store {store}: the database holds {stored} orders up to id "
        f"{summary.last_order_id} but the API serves {served.served}: {-difference} deleted "
        f"on EcoManager. {DELETED_ACTION}",
    )


def build_new_orders_check(partitions: PartitionsDefinition) -> AssetChecksDefinition:
    """The new_orders_complete check, partitioned like new_orders (one result per store)."""

    @asset_check(
        asset=NEW_ORDERS,
        name="new_orders_complete",
        partitions_def=partitions,
        description="The orders database holds exactly the orders the API serves up to the "
        "store's last synced order id (ERROR when some are missing, WARN when some were "
        "deleted on EcoManager).",
    )
    def new_orders_complete(
        context: AssetCheckExecutionContext, ecosync: EcosyncResource
    ) -> AssetCheckResult:
        store_id = context.partition_key
        with reported(store_id), ecosync.runtime() as runtime:
            store = runtime.store(store_id)
            summary = store_summary(runtime.engine, store_id)
            with runtime.client(store) as client:
                served = count_served_through(
                    client,
                    store,
                    summary.last_order_id,
                    page_hint(summary.order_count, store.per_page),
                )
        return completeness_result(summary, served)

    return new_orders_complete
