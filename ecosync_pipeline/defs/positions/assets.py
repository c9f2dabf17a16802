"""store_sync_positions and restored_sync_positions: the positions as Dagster assets.

store_sync_positions reads every layer once and shows what each holds for each store;
materializing restored_sync_positions restores every store's position from the best
layer, verified on the API: it is the restore button.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.resources import EcosyncResource
from ecosync_pipeline.positions.chain import RestoreReport
from ecosync_pipeline.positions.health import StatusReport, status_report
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.recovery import already_healthy, count_sources
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisRead

STORE_SYNC_POSITIONS = AssetKey("store_sync_positions")
RESTORED_SYNC_POSITIONS = AssetKey("restored_sync_positions")
POSITIONS_POOL = "ecosync_positions"
"""Steps that write every store's position share this pool (one at a time, dagster.yaml)."""

STATUS_COLUMNS = ("store", "layer", "page", "last_order_id", "source", "status", "orders")
RESTORE_COLUMNS = (
    "store",
    "redis_before",
    "json_before",
    "database_before",
    "restored_from",
    "page",
    "last_order_id",
    "api_calls",
    "already_healthy",
    "error",
)


def status_rows(report: StatusReport) -> list[dict[str, Any]]:
    """One row per store and layer: page, last order id, source and status."""
    rows: list[dict[str, Any]] = []
    unreachable = report.redis_state == "unreachable"
    for s in report.stores:
        for layer, position, status in (
            ("redis", s.redis, s.status),
            ("json", s.json, s.json_status),
        ):
            rows.append(
                {
                    "store": s.store,
                    "layer": layer,
                    "page": position.last_page if position else None,
                    "last_order_id": position.target if position else None,
                    "source": position.source if position else None,
                    "status": "unreachable" if layer == "redis" and unreachable else status,
                }
            )
        rows.append(
            {
                "store": s.store,
                "layer": "database",
                "page": None,  # the database knows ids, not pages: the sync locates the page
                "last_order_id": s.db_last_order_id,
                "source": "database",
                "status": "truth",
                "orders": s.db_order_count,
            }
        )
    return rows


def status_metadata(report: StatusReport) -> dict[str, Any]:
    """The metadata of store_sync_positions: the table, cache health, counts, Redis state."""
    metadata: dict[str, Any] = {
        "positions": table(STATUS_COLUMNS, status_rows(report)),
        "cache_health": MetadataValue.float(float(report.cache_health)),
        "redis_state": MetadataValue.text(report.redis_state),
        "stores": MetadataValue.int(len(report.stores)),
        "backup_location": MetadataValue.path(report.backup_location),
        "dagster/row_count": MetadataValue.int(len(report.stores)),
    }
    for status in ("healthy", "missing", "reset", "stale", "ahead", "calculated"):
        metadata[f"stores_{status}"] = MetadataValue.int(report.counts.get(status, 0))
    if report.loss.event_id:
        metadata["loss_event"] = MetadataValue.text(report.loss.event_id)
    if report.backup_quarantined:
        metadata["backup_quarantined"] = MetadataValue.path(report.backup_quarantined)
    return metadata


def describe(position: RedisRead) -> str:
    """A position in a table cell: 'page 12, id 240', 'none' or 'unreachable'."""
    if position is UNAVAILABLE:
        return "unreachable"
    if not isinstance(position, SyncPosition):
        return "none"
    return f"page {position.last_page}, id {position.target}"


def restore_rows(reports: Sequence[RestoreReport]) -> list[dict[str, Any]]:
    """One row per store: each layer before, where it was restored from, the result."""
    return [
        {
            "store": r.store,
            "redis_before": describe(r.before.redis),
            "json_before": describe(r.before.json),
            "database_before": describe(r.before.database),
            "restored_from": r.restored_from,
            "page": r.after.last_page if r.after else None,
            "last_order_id": r.after.target if r.after else None,
            "api_calls": r.api_calls,
            "already_healthy": already_healthy(r),
            "error": r.error,
        }
        for r in reports
    ]


def restore_metadata(reports: Sequence[RestoreReport]) -> dict[str, Any]:
    """Per-store before/after table and how many stores came from each layer."""
    counts = count_sources(reports)
    return {
        "positions": table(RESTORE_COLUMNS, restore_rows(reports)),
        "from_redis": MetadataValue.int(counts.from_redis),
        "from_json": MetadataValue.int(counts.from_json),
        "from_database": MetadataValue.int(counts.from_database),
        "calculated": MetadataValue.int(counts.calculated),
        "already_healthy": MetadataValue.int(counts.already_healthy),
        "failed": MetadataValue.int(counts.failed),
        "api_calls": MetadataValue.int(sum(r.api_calls for r in reports)),
    }


def unrecovered_failure(reports: Sequence[RestoreReport], what: str) -> Failure:
    """The Failure naming every store whose position could not be recovered, and why."""
    failed = [r for r in reports if not r.ok]
    lines = "; ".join(
        str(r.error) if f"store {r.store}" in str(r.error) else f"store {r.store}: {r.error}"
        for r in failed
    )
    return Failure(
        description=(
            f"{len(failed)} of {len(reports)} stores could not be {what} ({lines}). The other "
            "stores were written. Fix the cause named for each store (token variable, "
            "EcoManager reachability) and materialize restored_sync_positions again."
        ),
        metadata=restore_metadata(reports),
    )


@asset(
    key=STORE_SYNC_POSITIONS,
    group_name="positions",
    kinds={"redis", "python"},
    description="What Redis, the JSON backup and the orders database hold for each store "
    "(page, last order id, source, status) and the cache health. Read-only.",
)
def store_sync_positions(
    context: AssetExecutionContext, ecosync: EcosyncResource
) -> MaterializeResult:
    with reported(), ecosync.runtime() as runtime:
        report = status_report(runtime.chain)
    context.log.info(
        "%d stores, cache health %.0f%%, Redis %s%s",
        len(report.stores),
        report.cache_health * 100,
        report.redis_state,
        f", loss event {report.loss.event_id}" if report.loss.event_id else "",
    )
    return MaterializeResult(metadata=status_metadata(report))


@asset(
    key=RESTORED_SYNC_POSITIONS,
    deps=[STORE_SYNC_POSITIONS],
    group_name="positions",
    kinds={"redis", "python"},
    pool=POSITIONS_POOL,
    description="Every store's position restored from the best layer (Redis, JSON backup, "
    "or computed from the orders database), verified on the API and written back to Redis "
    "and the backup. Materialize it to restore positions after a cache loss.",
)
def restored_sync_positions(
    context: AssetExecutionContext, ecosync: EcosyncResource
) -> MaterializeResult:
    with reported(), ecosync.runtime() as runtime:
        reports = runtime.chain.restore_all(runtime.client)
    for r in reports:
        if r.ok:
            context.log.info(
                "store %s: restored from %s (page %s, last order id %s, %d API calls)",
                r.store,
                r.restored_from,
                r.after.last_page if r.after else None,
                r.after.target if r.after else None,
                r.api_calls,
            )
        else:
            context.log.error("store %s: not restored: %s", r.store, r.error)
    if any(not r.ok for r in reports):
        raise unrecovered_failure(reports, "restored")
    return MaterializeResult(metadata=restore_metadata(reports))
