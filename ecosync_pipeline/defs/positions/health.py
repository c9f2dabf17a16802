"""The positions' health as Dagster shows it: store_sync_positions' metadata, the three
checks' results, and the asset events that record them.

The judging is positions.judging's (Dagster-free); this module only renders its
verdicts. The asset check (checks.py), the sensor, the recovery job and the restore
button all call it, so a check evaluated by a run and one recorded by a sensor tick say
the same thing about the same moment. What goes with the report (``Standing``: the
restore under way, the last loss's story) is the caller's to find: a run and a sensor
look it up in the instance.

Every figure of the table was read at one moment, recorded as ``read_at``; the ages in
the table are as of then, and the materialization's own time says when it was recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetMaterialization,
    MetadataValue,
)

from ecosync_pipeline.defs.keys import (
    CACHE_HEALTH,
    LAYER_AGREEMENT,
    POSITION_HEALTH,
    STORE_SYNC_POSITIONS,
)
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.positions.health import StatusReport
from ecosync_pipeline.positions.judging import (
    STORE_COLUMNS,
    Cell,
    Remedy,
    Verdict,
    cache_health_percent,
    fingerprint,
    judge_cache_health,
    judge_layer_agreement,
    judge_position_health,
    needing_attention,
    positions_digest,
    recommendation,
    status_counts,
    store_rows,
)

DAGSTER_REMEDY = Remedy(
    restore="Materialize restored_sync_positions",
    automatic="the cache_loss_sensor then restores every position by itself",
)
SENSOR_NOTE = (
    "cache_loss_sensor launches recover_sync_positions by itself within a tick of a loss: "
    "look at its runs first."
)
NO_LOSS = "no cache loss recorded yet"
AssetEvent = AssetMaterialization | AssetCheckEvaluation
JUDGES: dict[str, Callable[[StatusReport, Remedy], Verdict]] = {
    CACHE_HEALTH: judge_cache_health,
    POSITION_HEALTH: judge_position_health,
    LAYER_AGREEMENT: judge_layer_agreement,
}


@dataclass(frozen=True)
class Standing:
    """What goes with a report: the restore under way (named), the last loss's story."""

    under_way: str = ""
    """e.g. 'run 48a7f1c2 of recover_sync_positions (started) is restoring them'."""
    last_loss: str = ""
    """The story of the loss under way, else of the last one restored ('' when none)."""

    @property
    def remedy(self) -> Remedy:
        """The advice's actions: wait for the restore under way, else Materialize."""
        return replace(DAGSTER_REMEDY, under_way=self.under_way)


def advice(report: StatusReport, standing: Standing | None = None) -> str:
    """What to do now, naming the Dagster actions (or the restore under way)."""
    return recommendation(report, (standing or Standing()).remedy)


def fact(value: Cell) -> MetadataValue:
    """One figure of a verdict as metadata of its own type."""
    if isinstance(value, bool):
        return MetadataValue.bool(value)
    if isinstance(value, int):
        return MetadataValue.int(value)
    if isinstance(value, float):
        return MetadataValue.float(value)
    return MetadataValue.text("" if value is None else value)


def check_result(
    name: str, report: StatusReport, standing: Standing | None = None
) -> AssetCheckResult:
    """The check ``name`` of store_sync_positions, judged from ``report``."""
    standing = standing or Standing()
    verdict = JUDGES[name](report, standing.remedy)
    metadata: dict[str, Any] = {}
    if verdict.columns:
        metadata["stores"] = table(verdict.columns, verdict.rows)
    metadata.update({key: fact(value) for key, value in verdict.facts.items()})
    if verdict.advise:
        note = "" if standing.under_way else f" {SENSOR_NOTE}"
        metadata["what_to_do"] = MetadataValue.md(f"{advice(report, standing)}{note}")
    if standing.last_loss:
        metadata["last_loss"] = MetadataValue.text(standing.last_loss)
    return AssetCheckResult(
        check_name=name,
        passed=verdict.passed,
        severity=AssetCheckSeverity.ERROR
        if verdict.severity == "error"
        else AssetCheckSeverity.WARN,
        metadata=metadata,
        description=verdict.description,
    )


def shown_digest(report: StatusReport, standing: Standing) -> str:
    """A digest of what a record of the health shows: the statuses (``fingerprint``), the
    advice and the story. A change of it is recorded at once."""
    shown = "\n".join((fingerprint(report), advice(report, standing), standing.last_loss))
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def status_metadata(
    report: StatusReport, now: datetime, standing: Standing | None = None
) -> dict[str, Any]:
    """The metadata of store_sync_positions: the table (read at ``now``), health in
    percent, counts, advice, the last loss's story."""
    standing = standing or Standing()
    metadata: dict[str, Any] = {
        "recommendation": MetadataValue.text(advice(report, standing)),
        "last_loss": MetadataValue.text(standing.last_loss or NO_LOSS),
        "read_at": MetadataValue.timestamp(now),
        "cache_health_percent": MetadataValue.float(cache_health_percent(report)),
        "stores_needing_attention": MetadataValue.int(needing_attention(report)),
        **{f"stores_{status}": MetadataValue.int(n) for status, n in status_counts(report).items()},
        "stores": table(STORE_COLUMNS, store_rows(report, now)),
        "redis_state": MetadataValue.text(report.redis_state),
        "fingerprint": MetadataValue.text(shown_digest(report, standing)),
        "positions_digest": MetadataValue.text(positions_digest(report)),
        "backup_location": MetadataValue.path(report.backup_location),
        "dagster/row_count": MetadataValue.int(len(report.stores)),
    }
    if report.loss.event_id:
        metadata["loss_event"] = MetadataValue.text(report.loss.event_id)
    if report.backup_quarantined:
        metadata["backup_quarantined"] = MetadataValue.path(report.backup_quarantined)
    return metadata


def health_events(
    report: StatusReport, now: datetime, standing: Standing | None = None
) -> list[AssetEvent]:
    """The report as asset events: a materialization of store_sync_positions, then each check.

    store_sync_positions is what the layers hold: a sensor or a run that read them
    records that state as the asset's latest materialization, and the checks after it
    evaluate that materialization. A sensor returns the events in its SensorResult (the
    daemon records them); an op or asset logs them with context.log_event.
    """
    standing = standing or Standing()
    events: list[AssetEvent] = [
        AssetMaterialization(
            asset_key=STORE_SYNC_POSITIONS,
            description=f"{advice(report, standing)} Figures read at "
            f"{now.strftime('%H:%M:%S UTC')}; ages as of then.",
            metadata=status_metadata(report, now, standing),
        )
    ]
    for name in JUDGES:
        result = check_result(name, report, standing)
        events.append(
            AssetCheckEvaluation(
                asset_key=STORE_SYNC_POSITIONS,
                check_name=name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
            )
        )
    return events
