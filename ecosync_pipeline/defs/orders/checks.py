"""new_orders_complete: per store, id sets prove that nothing the last sync read is missing.

Two comparisons, each sound on its own:

- the window audit (ecosync_pipeline.mirror.completeness): the ids EcoManager serves over
  the window the last sync run read, newest page first at 100 a page, against the ids
  the table holds live over the same range. An id served and not stored is missing,
  whatever the counts say; the check names the missing id ranges (ERROR);
- the count up to the last synced id, over the whole history (one call): the table's
  live count can only be inflated (by deletions upstream not flagged yet), so a count
  below what EcoManager serves proves at least that many orders missing (ERROR). A
  count that agrees proves nothing, and the check never says so.

Nothing missing in a window the ids covered passes; orders the table holds that
EcoManager no longer serves are a WARN (the reconciliation flags them), and so is a
window the audit's call budget did not cover entirely. The reconciliation
(``ecosync reconcile``, or the ``reconciled_orders`` partition) repairs every ERROR.
The check is evaluated in new_orders' own step, right after each store's sync (see
defs.orders.assets), for the partition of that store.
"""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    EventLogRecord,
    MetadataValue,
    deserialize_value,
)

from ecosync_pipeline.defs.keys import NEW_ORDERS, NEW_ORDERS_COMPLETE
from ecosync_pipeline.mirror.completeness import WindowAudit
from ecosync_pipeline.positions.recovery import ServedCount
from ecosync_pipeline.storage import StoreSummary

CHECK_DESCRIPTION = (
    "Id sets prove that the orders database holds every order EcoManager serves in the window "
    "the last sync read (ERROR naming the missing id ranges; WARN for orders deleted upstream "
    "not flagged yet, or a window only partly compared)."
)


def repair_action(store: str) -> str:
    """What repairs a store's missing orders, for the check's description and metadata."""
    return (
        f"The reconciliation fetches them: run `ecosync reconcile --store {store}` or "
        f"materialize the {store} partition of reconciled_orders (its schedule also runs it)."
    )


def _verdict(
    summary: StoreSummary, served: ServedCount, audit: WindowAudit | None
) -> tuple[bool, AssetCheckSeverity, str]:
    store, last = summary.store, summary.last_order_id
    short = served.served - summary.order_count
    if audit is not None and audit.refused:
        return (False, AssetCheckSeverity.ERROR, audit.refused)
    if audit is not None and audit.missing:
        return (
            False,
            AssetCheckSeverity.ERROR,
            f"store {store}: {audit.missing} orders EcoManager serves in ids "
            f"{audit.covered_low}..{audit.window.high} (the pages around the last sync's "
            f"window) are not in the database: ids {audit.ranges_text()}. "
            f"{repair_action(store)}",
        )
    if short > 0:
        return (
            False,
            AssetCheckSeverity.ERROR,
            f"store {store}: EcoManager serves {served.served} orders up to id {last} but the "
            f"database holds {summary.order_count}: at least {short} missing, below the last "
            f"sync's window. {repair_action(store)}",
        )
    if audit is None:
        return (True, AssetCheckSeverity.WARN, f"store {store}: no orders synced yet")
    window = f"ids {audit.window.low}..{audit.window.high}"
    if audit.frontier is None or audit.frontier < audit.window.low:
        return (
            False,
            AssetCheckSeverity.WARN,
            f"store {store}: no id is proved complete yet (frontier {audit.frontier}): its "
            "first import is under way; the next syncs carry it on.",
        )
    if not audit.complete:
        return (
            False,
            AssetCheckSeverity.WARN,
            f"store {store}: of the last sync's window ({window}) only ids "
            f"{audit.covered_low}..{audit.window.high} were compared (call budget); none of "
            "them is missing. The reconciliation's sweep covers the rest.",
        )
    return _all_compared(store, audit, max(audit.gone_unflagged, -short))


def _all_compared(
    store: str, audit: WindowAudit, gone: int
) -> tuple[bool, AssetCheckSeverity, str]:
    """The verdict when every id of the window was compared and none is missing."""
    # The audit reads whole pages: the ids compared reach below the window's low end.
    ids = (
        f"up to id {audit.window.high}"
        if not audit.covered_low
        else f"in ids {audit.covered_low}..{audit.window.high}"
    )
    compared = (
        f"the order EcoManager serves {ids} is"
        if audit.served == 1
        else f"the {audit.served} orders EcoManager serves {ids} are all"
    )
    if gone:
        return (
            False,
            AssetCheckSeverity.WARN,
            f"store {store}: {compared} in the database (compared id by id; "
            f"{sync_read(audit)}), and {gone} orders the database holds are no longer "
            "served (deleted upstream, not flagged yet): the reconciliation flags them.",
        )
    return (
        True,
        AssetCheckSeverity.ERROR,
        f"store {store}: {compared} in the database, compared id by id ({sync_read(audit)})",
    )


def sync_read(audit: WindowAudit) -> str:
    """What the last sync read, in words: the ids of its window."""
    low, high = audit.window.low, audit.window.high
    if low == high:
        return f"the last sync found no order after id {high}"
    if low == 0:
        return f"the last sync read every order up to id {high}"
    return f"the last sync read ids {low}..{high}"


def completeness_evaluation(
    summary: StoreSummary,
    served: ServedCount,
    audit: WindowAudit | None,
    materialization: EventLogRecord | None = None,
) -> AssetCheckEvaluation:
    """The check's result from the window audit and the history-wide count.

    ``materialization`` is the store's materialization the check judges (the one its
    sync just recorded), so the UI shows the result against it.
    """
    short = served.served - summary.order_count
    missing = max(audit.missing if audit else 0, short)
    metadata = {
        "orders_in_database": MetadataValue.int(summary.order_count),
        "orders_served_by_api": MetadataValue.int(served.served),
        "missing_from_database": MetadataValue.int(missing),
        "deleted_upstream": MetadataValue.int(max(audit.gone_unflagged if audit else 0, -short, 0)),
        "last_order_id": MetadataValue.int(summary.last_order_id or 0),
        "api_calls": MetadataValue.int(served.fetches + (audit.api_calls if audit else 0)),
    }
    if audit is not None:
        metadata["window_low"] = MetadataValue.int(audit.window.low)
        metadata["window_high"] = MetadataValue.int(audit.window.high)
        metadata["window_compared_from"] = MetadataValue.int(audit.covered_low or 0)
        metadata["window_orders_compared"] = MetadataValue.int(audit.served)
        metadata["missing_id_ranges"] = MetadataValue.text(audit.ranges_text(20) or "none")
    passed, severity, description = _verdict(summary, served, audit)
    if missing:
        metadata["what_to_do"] = MetadataValue.md(repair_action(summary.store))
    return AssetCheckEvaluation(
        asset_key=NEW_ORDERS,
        check_name=NEW_ORDERS_COMPLETE,
        passed=passed,
        severity=severity,
        metadata=metadata,
        description=description,
        target_materialization_data=judged(materialization),
        partition=summary.store,
    )


def judged(materialization: EventLogRecord | None) -> Any:
    """The evaluation's pointer to the materialization it judges, or None.

    Dagster fills this pointer in for a check result of a one-partition step; a step of
    many stores gives each store's evaluation itself. Dagster 1.13 exports no
    constructor for it, so it is read from the form Dagster stores it in (an event in
    every instance's database holds it, so the form stays readable across releases);
    test_batches checks that each store's evaluation points at its own materialization.
    """
    if materialization is None:
        return None
    return deserialize_value(
        json.dumps(
            {
                "__class__": "AssetCheckEvaluationTargetMaterializationData",
                "storage_id": materialization.storage_id,
                "run_id": materialization.run_id,
                "timestamp": materialization.timestamp,
            }
        )
    )
