"""Checks on store_sync_positions: cache health, each store's position health, layer agreement.

The three are judged from one status report (one Redis round trip, one backup read, one
query), in one step, so they always describe the same moment. The judging functions
are plain: each takes a StatusReport and returns an AssetCheckResult.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.positions.assets import STORE_SYNC_POSITIONS
from ecosync_pipeline.defs.resources import EcosyncResource
from ecosync_pipeline.positions.health import StatusReport, StoreStatus, status_report
from ecosync_pipeline.positions.model import PositionStatus, SyncPosition

CACHE_HEALTH_THRESHOLD = 0.8
ERROR_STATUSES: frozenset[PositionStatus] = frozenset({"missing", "reset", "ahead"})
WARN_STATUSES: frozenset[PositionStatus] = frozenset({"stale", "calculated"})

RESTORE_ACTION = (
    "Materialize restored_sync_positions (the restore button) or launch the "
    "recover_sync_positions job; the cache_loss_sensor launches that job by itself within "
    "a tick of a loss, so look at its runs first."
)

CACHE_HEALTH = AssetCheckSpec(
    "cache_health",
    asset=STORE_SYNC_POSITIONS,
    description=f"At least {CACHE_HEALTH_THRESHOLD:.0%} of the stores have a healthy "
    "position in Redis.",
)
POSITION_HEALTH = AssetCheckSpec(
    "position_health",
    asset=STORE_SYNC_POSITIONS,
    description="Every store's position (Redis, else the JSON backup) agrees with the orders "
    "database: ERROR when missing, reset to page 1 or ahead of the data; WARN when stale or "
    "when the store has no orders yet.",
)
LAYER_AGREEMENT = AssetCheckSpec(
    "layer_agreement",
    asset=STORE_SYNC_POSITIONS,
    description="Redis, the JSON backup and the orders database name the same last order id "
    "(and Redis and the backup the same page) for every store.",
)


def cache_health_result(report: StatusReport) -> AssetCheckResult:
    """Fails (WARN) when fewer than 80% of the stores have a healthy Redis position."""
    health = float(report.cache_health)
    passed = health >= CACHE_HEALTH_THRESHOLD
    metadata: dict[str, Any] = {
        "cache_health": MetadataValue.float(health),
        "threshold": MetadataValue.float(CACHE_HEALTH_THRESHOLD),
        "redis_state": MetadataValue.text(report.redis_state),
    }
    if report.loss.missing:
        metadata["stores_without_key"] = MetadataValue.text(", ".join(report.loss.missing))
    if not passed:
        metadata["what_to_do"] = MetadataValue.md(RESTORE_ACTION)
    state = "" if report.redis_state == "ok" else f" (Redis {report.redis_state})"
    return AssetCheckResult(
        check_name=CACHE_HEALTH.name,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"cache health {health:.0%}{state}"
        + ("" if passed else f"; below {CACHE_HEALTH_THRESHOLD:.0%}. {RESTORE_ACTION}"),
    )


def effective_status(row: StoreStatus) -> PositionStatus:
    """The status of the position a sync would start from: Redis's if it has a key."""
    return row.status if row.redis is not None else row.json_status


def position_health_result(report: StatusReport) -> AssetCheckResult:
    """ERROR if a store's position is missing, reset or ahead; WARN if stale or calculated."""
    rows = []
    errors: list[str] = []
    warnings: list[str] = []
    for s in report.stores:
        status = effective_status(s)
        level = "error" if status in ERROR_STATUSES else "warn" if status in WARN_STATUSES else ""
        (errors if level == "error" else warnings if level == "warn" else []).append(
            f"{s.store} ({status})"
        )
        rows.append(
            {
                "store": s.store,
                "status": status,
                "redis": s.status,
                "json": s.json_status,
                "db_last_order_id": s.db_last_order_id,
                "severity": level or "ok",
            }
        )
    passed = not errors and not warnings
    severity = AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN
    metadata: dict[str, Any] = {
        "stores": table(("store", "status", "redis", "json", "db_last_order_id", "severity"), rows),
        "errors": MetadataValue.int(len(errors)),
        "warnings": MetadataValue.int(len(warnings)),
    }
    if passed:
        description = f"all {len(rows)} stores healthy"
    else:
        description = "; ".join(
            part
            for part in (
                f"ERROR: {', '.join(errors)}" if errors else "",
                f"WARN: {', '.join(warnings)}" if warnings else "",
            )
            if part
        )
        action = position_action({r["status"] for r in rows})
        metadata["what_to_do"] = MetadataValue.md(action)
        description = f"{description}. {action}"
    return AssetCheckResult(
        check_name=POSITION_HEALTH.name,
        passed=passed,
        severity=severity,
        metadata=metadata,
        description=description,
    )


STATUS_ACTIONS: dict[str, str] = {
    "missing": "missing: neither Redis nor the backup holds the position. " + RESTORE_ACTION,
    "reset": "reset: a cache says page 1 with nothing synced while the database holds "
    "orders (the failure ecosync exists to prevent). " + RESTORE_ACTION,
    "ahead": "ahead: a cache names orders the database does not hold (was the database "
    "restored from an older backup?). Syncs ignore it and resume from the database; "
    "restore positions to rewrite the caches from the database.",
    "stale": "stale: a cache is behind the database; the next sync recomputes the position "
    "from the database for a few API calls, or restore positions now.",
    "calculated": "calculated: the store has no orders yet; materialize its new_orders "
    "partition for its first sync (from page 1).",
}


def position_action(statuses: set[str]) -> str:
    """What an operator does about each status a position health check found."""
    return " ".join(STATUS_ACTIONS[s] for s in STATUS_ACTIONS if s in statuses)


def _describe(position: SyncPosition | None) -> str:
    if position is None:
        return "none"
    return f"page {position.last_page}, id {position.target}"


def layer_agreement_result(report: StatusReport) -> AssetCheckResult:
    """Fails (WARN) when a store's layers disagree on its last order id or page."""
    if report.redis_state == "unreachable":
        return AssetCheckResult(
            check_name=LAYER_AGREEMENT.name,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata={"redis_state": MetadataValue.text("unreachable")},
            description="Redis is unreachable, so its positions could not be compared; syncs "
            "use the JSON backup and the database meanwhile. Check that Redis is running.",
        )
    rows = []
    disagree: list[str] = []
    for s in report.stores:
        ids = {p.target if p is not None else None for p in (s.redis, s.json)}
        ids.add(s.db_last_order_id)
        pages = {p.last_page if p is not None else None for p in (s.redis, s.json)}
        agree = len(ids) == 1 and len(pages) == 1
        if not agree:
            disagree.append(s.store)
        rows.append(
            {
                "store": s.store,
                "redis": _describe(s.redis),
                "json": _describe(s.json),
                "database_last_order_id": s.db_last_order_id,
                "agree": agree,
            }
        )
    passed = not disagree
    metadata: dict[str, Any] = {
        "stores": table(("store", "redis", "json", "database_last_order_id", "agree"), rows),
        "disagreeing": MetadataValue.int(len(disagree)),
    }
    if passed:
        description = f"all {len(rows)} stores agree across Redis, the backup and the database"
    else:
        metadata["what_to_do"] = MetadataValue.md(RESTORE_ACTION)
        description = (
            f"layers disagree for {', '.join(disagree)}; the database is the "
            f"truth. {RESTORE_ACTION}"
        )
    return AssetCheckResult(
        check_name=LAYER_AGREEMENT.name,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


JUDGES = {
    CACHE_HEALTH.key: cache_health_result,
    POSITION_HEALTH.key: position_health_result,
    LAYER_AGREEMENT.key: layer_agreement_result,
}


@multi_asset_check(
    name="position_checks",
    specs=[CACHE_HEALTH, POSITION_HEALTH, LAYER_AGREEMENT],
    can_subset=True,
    description="Cache health, position health and layer agreement, from one status report.",
)
def position_checks(
    context: AssetCheckExecutionContext, ecosync: EcosyncResource
) -> Iterator[AssetCheckResult]:
    with reported(), ecosync.runtime() as runtime:
        report = status_report(runtime.chain)
    selected: set[AssetCheckKey] = set(context.selected_asset_check_keys)
    for key, judge in JUDGES.items():
        if key in selected:
            yield judge(report)
