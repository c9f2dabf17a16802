"""store_freshness: a check on new_orders that WARNs naming each store that has not synced
for longer than ECOSYNC_FRESHNESS_MINUTES.

A store's last sync is the latest materialization of its new_orders partition: every
successful sync records one (new orders or none, page mode or cursor mode), a failed one
records none. The position's updated_at is not used: a cursor-mode store keeps no
position, and a sync that finds no new order need not move it. The asset-level
FreshnessPolicy looks at the latest materialization of any store; this check looks at
each one.

The check says nothing about positions, so it cannot contradict the position checks. A
store that has never synced is listed but does not fail the check: the position checks
already call it "without orders yet" and say to materialize its first sync.

The orders domain defines the check; the positions domain's cache_loss_sensor records
it on every change of the overdue stores, and at least hourly: both through this module.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    asset_check,
)

from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_FRESHNESS, STORE_FRESHNESS_KEY
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.resources import EcoManagerResource
from ecosync_pipeline.positions.judging import age

REFRESH_SECONDS = 3600
"""The sensor records the check at least this often, even when no store changed."""


def last_synced(instance: DagsterInstance, stores: Sequence[str]) -> dict[str, float | None]:
    """Each store's latest new_orders materialization (epoch seconds), None if never."""
    ids = instance.get_latest_storage_id_by_partition(
        NEW_ORDERS, DagsterEventType.ASSET_MATERIALIZATION, set(stores)
    )
    found: dict[str, float | None] = dict.fromkeys(stores)
    if ids:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=NEW_ORDERS, storage_ids=list(ids.values())),
            limit=len(ids),
        ).records
        for record in records:
            if record.partition_key in found:
                found[record.partition_key] = record.timestamp
    return found


def _minutes(seconds: float) -> int:
    return int(seconds // 60)


def _rows(
    synced: Mapping[str, float | None], overdue: Sequence[str], now: float
) -> list[dict[str, Any]]:
    """One row per store: its last sync, how long ago, whether it is overdue."""
    at = datetime.fromtimestamp(now, timezone.utc)
    rows = []
    for store, t in sorted(synced.items()):
        last = None if t is None else datetime.fromtimestamp(t, timezone.utc)
        rows.append(
            {
                "store": store,
                "last_sync": last.isoformat() if last else "",
                "age": age(last, at) if last else "never synced",
                "overdue": store in overdue,
            }
        )
    return rows


def freshness_result(
    synced: Mapping[str, float | None], now: float, minutes: int
) -> AssetCheckResult:
    """WARN naming each store whose last sync is older than ``minutes``, oldest first."""
    overdue = sorted(
        (s for s, t in synced.items() if t is not None and now - t > minutes * 60),
        key=lambda s: synced[s] or 0.0,
    )
    never = sorted(s for s, t in synced.items() if t is None)
    metadata: dict[str, Any] = {
        "stores": table(("store", "last_sync", "age", "overdue"), _rows(synced, overdue, now)),
        "stores_overdue": MetadataValue.int(len(overdue)),
        "freshness_minutes": MetadataValue.int(minutes),
        "fingerprint": MetadataValue.text(fingerprint(overdue, never)),
        "evaluated_at": MetadataValue.timestamp(now),
        **{
            f"minutes_since_sync_{s}": MetadataValue.int(_minutes(now - t))
            for s, t in synced.items()
            if t is not None
        },
    }
    if never:
        metadata["never_synced"] = MetadataValue.text(", ".join(never))
    if overdue:
        advice = " ".join(
            f"{s} has not synced for {_minutes(now - (synced[s] or now))} min: check its "
            "last new_orders run."
            for s in overdue
        )
        metadata["what_to_do"] = MetadataValue.md(advice)
        description = (
            f"{len(overdue)} of {len(synced)} stores not synced for over {minutes} min. {advice}"
        )
    else:
        description = f"all {len(synced) - len(never)} synced stores synced within {minutes} min"
    if never:
        description += f"; never synced yet: {', '.join(never)} (materialize its partition)"
    return AssetCheckResult(
        asset_key=NEW_ORDERS,
        check_name=STORE_FRESHNESS,
        passed=not overdue,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


def fingerprint(overdue: Sequence[str], never: Sequence[str]) -> str:
    """A digest of which stores are overdue or never synced (ages alone are no change)."""
    return hashlib.sha256(json.dumps([list(overdue), list(never)]).encode()).hexdigest()[:16]


def fingerprint_of(result: AssetCheckResult) -> object:
    """The fingerprint a freshness result carries."""
    return getattr(result.metadata["fingerprint"], "value", None)


def as_evaluation(result: AssetCheckResult) -> AssetCheckEvaluation:
    """The check result as an event a sensor returns (the daemon records it)."""
    return AssetCheckEvaluation(
        asset_key=NEW_ORDERS,
        check_name=STORE_FRESHNESS,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
    )


def freshness_events(
    instance: DagsterInstance, stores: Sequence[str], now: float, minutes: int
) -> list[AssetCheckEvaluation]:
    """The check as an event when its overdue stores differ from the last recorded evaluation
    (by a tick or a run), or that is an hour old; else nothing."""
    result = freshness_result(last_synced(instance, stores), now, minutes)
    record = instance.get_latest_asset_check_evaluation_record(STORE_FRESHNESS_KEY)
    if record is not None and record.event is not None and record.event.dagster_event:
        shown = getattr(record.event.dagster_event.event_specific_data, "metadata", {})
        # Judged by the time the check was evaluated at, the clock the sensor passes.
        at = getattr(shown.get("evaluated_at"), "value", None)
        fresh = isinstance(at, float) and now - at < REFRESH_SECONDS
        same = getattr(shown.get("fingerprint"), "value", None) == fingerprint_of(result)
        if fresh and same:
            return []
    return [as_evaluation(result)]


def build_freshness_check(minutes: int) -> AssetsDefinition:
    """The store_freshness check on new_orders, with the window of ECOSYNC_FRESHNESS_MINUTES."""

    @asset_check(
        asset=NEW_ORDERS,
        name=STORE_FRESHNESS,
        description=f"WARN naming each store whose last new_orders sync is over {minutes} "
        "min old (ECOSYNC_FRESHNESS_MINUTES). cache_loss_sensor records it on every change.",
    )
    def store_freshness(
        context: AssetCheckExecutionContext, ecomanager: EcoManagerResource
    ) -> AssetCheckResult:
        stores = [s.identifier for s in ecomanager.stores()]
        return freshness_result(last_synced(context.instance, stores), time.time(), minutes)

    return store_freshness
