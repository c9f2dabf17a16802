"""store_partitions_sensor: the stores file and the store partitions kept in step, and the
stores that turn stale recorded.

Every tick compares the stores file (parsed again only when it changes) with the
partitions the instance holds:

- a store of the file without a partition gets one, so it appears in the UI, and can be
  materialized, without reloading the code location;
- a partition no store of the file has keeps its place when a run synced it (its run
  history and materializations stay visible; the schedule no longer syncs it, and the
  tick says so); one that no run ever synced is deleted: the UI's partition picker adds
  a partition for any text typed into it, and a store the file does not list cannot be
  synced;
- each store whose last sync crossed the freshness window since the previous tick gets
  its store_freshness result (WARN), which no run would record.

The cursor is the time of the tick: the next one records only the stores that crossed the
window after it. The sensor requests no run; every tick says what it did in its reason.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.keys import STORE_PARTITIONS_NAME
from ecosync_pipeline.defs.options import DEFAULT_FRESHNESS_MINUTES, DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.orders.freshness import latest_syncs, overdue_evaluations
from ecosync_pipeline.defs.resources import EcoManagerResource

NAMED = 10
"""Stores a tick's reason names at most (the rest counted)."""


def _names(stores: Sequence[str]) -> str:
    more = len(stores) - NAMED
    return ", ".join(stores[:NAMED]) + (f" and {more} more" if more > 0 else "")


def parse_since(cursor: str | None) -> float | None:
    """The previous tick's time, from its cursor (an ISO time); None on the first tick."""
    try:
        return datetime.fromisoformat(cursor).timestamp() if cursor else None
    except ValueError:
        return None


def tick_reason(
    configured: Sequence[str],
    added: Sequence[str],
    forgotten: Sequence[str],
    kept: Sequence[str],
    stale: Sequence[AssetCheckEvaluation],
) -> str:
    """What the tick did, in the operator's words (the tick's reason in the UI)."""
    parts = []
    if added:
        parts.append(f"added the partitions of {len(added)} new stores: {_names(added)}")
    else:
        parts.append(f"all {len(configured)} stores of the stores file have their partition")
    if forgotten:
        parts.append(
            f"deleted {len(forgotten)} partitions no store of the file has and no run "
            f"synced (typed in the UI, or a store removed before its first sync): "
            f"{_names(forgotten)}"
        )
    if kept:
        parts.append(
            f"{len(kept)} stores no longer in the file keep their history and are not "
            f"synced: {_names(kept)}"
        )
    if stale:
        names = [e.partition or "" for e in stale]
        parts.append(
            f"{len(stale)} stores not synced within the freshness window, their "
            f"store_freshness recorded as WARN: {_names(names)}"
        )
    return "; ".join(parts)


def build_store_partitions_sensor(
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES,
    clock: Callable[[], float] = time.time,
) -> SensorDefinition:
    """The sensor keeping a partition for each store of the file (and for no invented
    one), and recording store_freshness for the stores that turn stale (against ``clock``)."""

    @sensor(
        name="store_partitions_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds a new_orders partition for each store added to the stores file "
        "(no reload needed) and deletes partitions no store has and no run synced; removed "
        "stores keep their partition and history. Records store_freshness (WARN) for each "
        f"store that goes {freshness_minutes} min without a sync.",
    )
    def store_partitions_sensor(
        context: SensorEvaluationContext, ecomanager: EcoManagerResource
    ) -> SensorResult:
        with reported():
            configured = [store.identifier for store in ecomanager.stores()]
        now = clock()
        instance = context.instance
        known = instance.get_dynamic_partitions(STORE_PARTITIONS_NAME)
        known_set, listed = set(known), set(configured)
        added = [store for store in configured if store not in known_set]
        unlisted = [store for store in known if store not in listed]
        synced = latest_syncs(instance, unlisted) if unlisted else {}
        forgotten = [store for store in unlisted if synced[store] is None]
        kept = [store for store in unlisted if synced[store] is not None]
        stale = overdue_evaluations(
            instance,
            [s for s in configured if s in known_set],
            parse_since(context.cursor),
            now,
            freshness_minutes,
        )
        requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
        if added:
            requests.append(AddDynamicPartitionsRequest(STORE_PARTITIONS_NAME, added))
        if forgotten:
            requests.append(DeleteDynamicPartitionsRequest(STORE_PARTITIONS_NAME, forgotten))
        return SensorResult(
            skip_reason=tick_reason(configured, added, forgotten, kept, stale),
            dynamic_partitions_requests=requests,
            asset_events=stale,
            cursor=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        )

    return store_partitions_sensor
