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
(logarithmic) when it does not. The check is evaluated in new_orders' own step, right
after each store's sync (see defs.orders.assets), for the partition of that store.
"""

from __future__ import annotations

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    EventLogRecord,
    MetadataValue,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ecosync_pipeline.positions.recovery import ServedCount
from ecosync_pipeline.storage import StoreSummary

NEW_ORDERS = AssetKey("new_orders")
NEW_ORDERS_COMPLETE = "new_orders_complete"
CHECK_DESCRIPTION = (
    "The orders database holds exactly the orders the API serves up to the store's last "
    "synced order id (ERROR when some are missing, WARN when some were deleted on EcoManager)."
)
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


def _verdict(summary: StoreSummary, served: ServedCount) -> tuple[bool, AssetCheckSeverity, str]:
    stored = summary.order_count
    difference = served.served - stored
    store, last = summary.store, summary.last_order_id
    if difference == 0:
        return (
            True,
            AssetCheckSeverity.ERROR,
            f"store {store}: all {stored} orders up to id {last} are in the database",
        )
    if difference > 0:
        return (
            False,
            AssetCheckSeverity.ERROR,
            f"store {store}: the API serves {served.served} orders up to id {last} but the "
            f"database holds {stored}: {difference} missing. {MISSING_ACTION}",
        )
    return (
        False,
        AssetCheckSeverity.WARN,
        f"store {store}: the database holds {stored} orders up to id {last} but the API "
        f"serves {served.served}: {-difference} deleted on EcoManager. {DELETED_ACTION}",
    )


def completeness_evaluation(
    summary: StoreSummary, served: ServedCount, materialization: EventLogRecord | None = None
) -> AssetCheckEvaluation:
    """Compare the database's count with the API's count up to the same last order id.

    ``materialization`` is the store's materialization the check judges (the one its
    sync just recorded), so the UI shows the result against it.
    """
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
    passed, severity, description = _verdict(summary, served)
    if difference:
        metadata["what_to_do"] = MetadataValue.md(
            MISSING_ACTION if difference > 0 else DELETED_ACTION
        )
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=materialization.storage_id,
            run_id=materialization.run_id,
            timestamp=materialization.timestamp,
        )
        if materialization is not None
        else None
    )
    return AssetCheckEvaluation(
        asset_key=NEW_ORDERS,
        check_name=NEW_ORDERS_COMPLETE,
        passed=passed,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=target,
        partition=summary.store,
    )
