"""The three position checks judged from one StatusReport, and the asset events that
record them: a materialization of store_sync_positions (the report), then each check.

Each judge is a plain function of the report. The asset check (checks.py), the sensor,
the recovery job and the restore button all call them, so a check evaluated by a run
and one recorded by a sensor tick say the same thing about the same moment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetMaterialization,
    MetadataValue,
)

from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.positions.keys import (
    CACHE_HEALTH,
    LAYER_AGREEMENT,
    POSITION_HEALTH,
    STORE_SYNC_POSITIONS,
)
from ecosync_pipeline.defs.positions.report import (
    cache_health_percent,
    recommendation,
    status_metadata,
    store_status,
)
from ecosync_pipeline.positions.health import StatusReport
from ecosync_pipeline.positions.model import SyncPosition

CACHE_HEALTH_THRESHOLD = 80.0
"""Percent of the stores whose Redis position must be healthy."""
ERROR_STATUSES = frozenset({"missing", "reset", "ahead"})
WARN_STATUSES = frozenset({"stale", "unreachable"})
AssetEvent = AssetMaterialization | AssetCheckEvaluation
SENSOR_NOTE = (
    "cache_loss_sensor launches recover_sync_positions by itself within a tick of a loss: "
    "look at its runs first."
)


def what_to_do(report: StatusReport) -> MetadataValue:
    """The recommendation, and where the automatic recovery shows."""
    return MetadataValue.md(f"{recommendation(report)} {SENSOR_NOTE}")


def cache_health_result(report: StatusReport) -> AssetCheckResult:
    """Fails (WARN) when fewer than 80% of the stores have a healthy Redis position."""
    percent = cache_health_percent(report)
    passed = percent >= CACHE_HEALTH_THRESHOLD
    unhealthy = [s.store for s in report.stores if s.status not in ("healthy", "calculated")]
    metadata: dict[str, Any] = {
        "cache_health_percent": MetadataValue.float(percent),
        "redis_state": MetadataValue.text(report.redis_state),
    }
    if report.redis_state == "unreachable":
        unhealthy = [s.store for s in report.stores]
    if unhealthy:
        metadata["stores_needing_attention"] = MetadataValue.text(", ".join(unhealthy))
    healthy = len(report.stores) - len(unhealthy)
    state = "" if report.redis_state == "ok" else f", Redis {report.redis_state}"
    description = (
        f"cache health {percent:g}% ({healthy} of {len(report.stores)} healthy{state}; "
        f"passes from {CACHE_HEALTH_THRESHOLD:g}%)"
    )
    if not passed:
        description += f". {recommendation(report)}"
        metadata["what_to_do"] = what_to_do(report)
    return AssetCheckResult(
        check_name=CACHE_HEALTH,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


def position_health_result(report: StatusReport) -> AssetCheckResult:
    """ERROR if a store's Redis position is missing, reset or ahead; WARN if stale or
    Redis is unreachable. A store without orders yet has nothing to lose: it passes."""
    rows = []
    errors: list[str] = []
    warnings: list[str] = []
    for s in report.stores:
        status = store_status(report, s)
        level = "error" if status in ERROR_STATUSES else "warn" if status in WARN_STATUSES else "ok"
        if level == "error":
            errors.append(f"{s.store} ({status})")
        elif level == "warn":
            warnings.append(f"{s.store} ({status})")
        rows.append(
            {
                "store": s.store,
                "status": status,
                "backup": s.json_status,
                "db_last_order_id": s.db_last_order_id,
                "severity": level,
            }
        )
    passed = not errors and not warnings
    metadata: dict[str, Any] = {
        "stores": table(("store", "status", "backup", "db_last_order_id", "severity"), rows),
        "errors": MetadataValue.int(len(errors)),
        "warnings": MetadataValue.int(len(warnings)),
    }
    if passed:
        new = sum(1 for r in rows if r["status"] == "calculated")
        description = f"all {len(rows)} stores healthy" + (
            f" ({new} without orders yet: their first sync starts at page 1)" if new else ""
        )
    else:
        found = [f"ERROR: {', '.join(errors)}"] if errors else []
        found += [f"WARN: {', '.join(warnings)}"] if warnings else []
        metadata["what_to_do"] = what_to_do(report)
        description = f"{'; '.join(found)}. {recommendation(report)}"
    return AssetCheckResult(
        check_name=POSITION_HEALTH,
        passed=passed,
        severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


def _describe(position: SyncPosition | None) -> str:
    return "none" if position is None else f"page {position.last_page}, id {position.target}"


def layer_agreement_result(report: StatusReport) -> AssetCheckResult:
    """Fails (WARN) when a store's layers disagree on its last order id or page."""
    if report.redis_state == "unreachable":
        return AssetCheckResult(
            check_name=LAYER_AGREEMENT,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata={"redis_state": MetadataValue.text("unreachable")},
            description="Redis is unreachable, so its positions could not be compared. "
            + recommendation(report),
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
                "backup": _describe(s.json),
                "database_last_order_id": s.db_last_order_id,
                "agree": agree,
            }
        )
    metadata: dict[str, Any] = {
        "stores": table(("store", "redis", "backup", "database_last_order_id", "agree"), rows),
        "disagreeing": MetadataValue.int(len(disagree)),
    }
    if not disagree:
        description = f"all {len(rows)} stores agree across Redis, the backup and the database"
    else:
        metadata["what_to_do"] = what_to_do(report)
        description = (
            f"layers disagree for {', '.join(disagree)}; the database is the truth. "
            + recommendation(report)
        )
    return AssetCheckResult(
        check_name=LAYER_AGREEMENT,
        passed=not disagree,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


JUDGES = {
    CACHE_HEALTH: cache_health_result,
    POSITION_HEALTH: position_health_result,
    LAYER_AGREEMENT: layer_agreement_result,
}


def health_events(report: StatusReport, now: datetime) -> list[AssetEvent]:
    """The report as asset events: a materialization of store_sync_positions, then each check.

    store_sync_positions is what the layers hold: a sensor or a run that read them
    records that state as the asset's latest materialization, and the checks after it
    evaluate that materialization. A sensor returns the events in its SensorResult (the
    daemon records them); an op or asset logs them with context.log_event.
    """
    events: list[AssetEvent] = [
        AssetMaterialization(
            asset_key=STORE_SYNC_POSITIONS,
            description=recommendation(report),
            metadata=status_metadata(report, now),
        )
    ]
    for judge in JUDGES.values():
        result = judge(report)
        events.append(
            AssetCheckEvaluation(
                asset_key=STORE_SYNC_POSITIONS,
                check_name=str(result.check_name),
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
            )
        )
    return events
