"""store_freshness: per store, WARN once its last sync is older than the freshness window.

A store's last sync is the latest materialization of its new_orders partition: every
successful sync records one (new orders or none, page mode or cursor mode), a failed one
records none. The position's updated_at is not used: a cursor-mode store keeps no
position, and a sync that finds no new order need not move it. The asset-level
FreshnessPolicy looks at the latest materialization of any store; this check looks at
each one, as a partition of its own.

The check is evaluated for a store in two places, so its result is always current:

- in new_orders' own step, for every store of the run (defs.orders.assets): a store just
  synced passes; a store whose sync failed is judged on its previous sync, so a store
  failing for longer than the window turns WARN in the run that failed;
- by store_partitions_sensor, for each store whose last sync crossed the window since the
  sensor's previous tick: nothing ran for it, and no run would say so.

Each result names the time of the sync it judges ("not synced since 02:15:03 UTC"), never
an age that goes stale. A store that has never synced has no sync to judge: its
partition has no result, as its new_orders partition has no materialization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    MetadataValue,
)

from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_FRESHNESS, STORE_RUN_TAG_PREFIX
from ecosync_pipeline.defs.orders.checks import judged


def freshness_description(minutes: int) -> str:
    """The check's description in the catalog, with the window in use."""
    return (
        f"Per store: WARN once its last new_orders sync is over {minutes} min old "
        "(ECOSYNC_FRESHNESS_MINUTES). Evaluated for each store of every sync run, and by "
        "store_partitions_sensor when a store crosses the window without a run."
    )


def latest_syncs(
    instance: DagsterInstance, stores: Sequence[str]
) -> dict[str, EventLogRecord | None]:
    """Each store's latest new_orders materialization (its last sync), None if never."""
    ids = instance.get_latest_storage_id_by_partition(
        NEW_ORDERS, DagsterEventType.ASSET_MATERIALIZATION, set(stores)
    )
    found: dict[str, EventLogRecord | None] = dict.fromkeys(stores)
    if ids:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=NEW_ORDERS, storage_ids=list(ids.values())),
            limit=len(ids),
        ).records
        for record in records:
            if record.partition_key in found:
                found[record.partition_key] = record
    return found


def _utc(timestamp: float) -> str:
    return f"{datetime.fromtimestamp(timestamp, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def freshness_evaluation(
    store: str, last_sync: EventLogRecord, now: float, minutes: int
) -> AssetCheckEvaluation:
    """The check's result for one store, judging its last sync (``last_sync``) at ``now``."""
    overdue = now - last_sync.timestamp > minutes * 60
    synced = _utc(last_sync.timestamp)
    if overdue:
        description = (
            f"store {store}: not synced since {synced}, over the {minutes}-min window "
            "(ECOSYNC_FRESHNESS_MINUTES). Its runs since then failed or did not start: "
            f"filter the Runs page by the tag {STORE_RUN_TAG_PREFIX}{store}=1 to find them "
            "and their error."
        )
    else:
        description = (
            f"store {store}: synced at {synced}; this check warns if no sync follows "
            f"within {minutes} min (ECOSYNC_FRESHNESS_MINUTES)"
        )
    return AssetCheckEvaluation(
        asset_key=NEW_ORDERS,
        check_name=STORE_FRESHNESS,
        passed=not overdue,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "last_sync": MetadataValue.timestamp(last_sync.timestamp),
            "minutes_since_sync": MetadataValue.int(int((now - last_sync.timestamp) // 60)),
            "freshness_minutes": MetadataValue.int(minutes),
        },
        description=description,
        target_materialization_data=judged(last_sync),
        partition=store,
    )


def newly_overdue(
    syncs: Mapping[str, EventLogRecord | None], since: float | None, now: float, minutes: int
) -> list[str]:
    """The stores whose last sync crossed the window after ``since`` and by ``now`` (every
    overdue store when ``since`` is None), the longest overdue first."""
    window = minutes * 60
    crossed = [
        (record.timestamp, store)
        for store, record in syncs.items()
        if record is not None
        and record.timestamp + window < now
        and (since is None or record.timestamp + window >= since)
    ]
    return [store for _, store in sorted(crossed)]


def overdue_evaluations(
    instance: DagsterInstance,
    stores: Sequence[str],
    since: float | None,
    now: float,
    minutes: int,
) -> list[AssetCheckEvaluation]:
    """The WARN results of the stores that crossed the window since ``since`` (a sensor's
    previous tick): each store is recorded once when it turns overdue, not on every tick."""
    syncs = latest_syncs(instance, stores)
    return [
        freshness_evaluation(store, record, now, minutes)
        for store in newly_overdue(syncs, since, now, minutes)
        if (record := syncs[store]) is not None
    ]
