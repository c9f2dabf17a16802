"""store_sync_positions and restored_sync_positions: the positions as Dagster assets.

store_sync_positions reads every layer once and shows what each holds for each store;
materializing restored_sync_positions restores every store's position from the best
layer, verified on the API: it is the restore button.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.keys import (
    LOSS_EVENT_TAG,
    OWNERS,
    POSITIONS_POOL,
    REDIS_STATE_TAG,
    RESTORED_SYNC_POSITIONS,
    STEPPED_ASIDE_TAG,
    STORE_SYNC_POSITIONS,
)
from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.defs.partitions import tag_run_with_stores
from ecosync_pipeline.defs.positions.health import health_events, status_metadata
from ecosync_pipeline.defs.positions.restores import earlier_restores, named
from ecosync_pipeline.defs.positions.story import (
    first_seen,
    lasting,
    ongoing,
    standing_for,
    story_metadata,
)
from ecosync_pipeline.defs.resources import EcoManagerResource, PositionsResource
from ecosync_pipeline.positions import recovery
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.positions.judging import cache_health_percent
from ecosync_pipeline.positions.loss import LossReport
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.outcomes import RestoreReport
from ecosync_pipeline.positions.recovery import already_healthy, count_sources
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisRead
from ecosync_pipeline.positions.story import LossStory, restored_story

# Seven short columns: the UI shows them whole at 1,600 px.
RESTORE_COLUMNS = (
    "store",
    "redis_before",
    "restored_from",
    "page",
    "last_order_id",
    "api_calls",
    "result",
)


def describe(position: RedisRead) -> str:
    """A Redis position in a table cell: 'page 12', 'none' or 'unreachable'."""
    if position is UNAVAILABLE:
        return "unreachable"
    if not isinstance(position, SyncPosition):
        return "none"
    return f"page {position.last_page}"


def _result(report: RestoreReport) -> str:
    if not report.ok:
        return f"failed: {report.error}"
    return "already healthy" if already_healthy(report) else "restored"


def restore_rows(reports: Sequence[RestoreReport]) -> list[dict[str, Any]]:
    """One row per store: Redis before, the layer it was restored from, the result."""
    return [
        {
            "store": r.store,
            "redis_before": describe(r.before.redis),
            "restored_from": r.restored_from,
            "page": r.after.last_page if r.after else None,
            "last_order_id": r.after.target if r.after else None,
            "api_calls": r.api_calls,
            "result": _result(r),
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


def tag_recovered(context: Any, reports: Sequence[RestoreReport]) -> None:
    """Tag the run with each store it restored or failed to (ecosync/store.<STORE>=1), so
    the Runs page finds a store's recoveries by the tag of its syncs."""
    touched = [r.store for r in reports if not (r.ok and already_healthy(r))]
    tag_run_with_stores(context.instance, context.run, touched)


def log_health(
    context: Any, chain: PositionChain, story: LossStory | None = None, under_way: str = ""
) -> None:
    """Record the positions' health as they stand now: store_sync_positions and its checks,
    with ``story`` (the loss this run restored), else the story the instance holds, and
    ``under_way`` (this run, restoring them), else the restore the instance lists."""
    report = status_report(chain)
    now = utc_now()
    standing = standing_for(context.instance, report, now, run_id=context.run.run_id)
    if story is not None:
        standing = replace(standing, last_loss=story.line(now))
    if under_way:
        standing = replace(standing, under_way=under_way)
        if lasting(report.loss):
            seen = first_seen(context.instance, report.loss.event_id or "", context.run.tags)
            standing = replace(
                standing, last_loss=ongoing(report.loss, seen or now).line(now, under_way)
            )
    for event in health_events(report, now, standing):
        context.log_event(event)


def restore_story(
    context: Any, loss: LossReport, reports: Sequence[RestoreReport], started: datetime
) -> LossStory | None:
    """The story of this run's restore of ``loss`` (seen when the sensor saw it, else when
    this run did), or None when it restored nothing."""
    tags = context.run.tags
    event = tags.get(LOSS_EVENT_TAG) or loss.event_id or "none (a restore by hand)"
    return restored_story(
        event,
        first_seen(context.instance, event, tags) or started,
        reports,
        redis_state=tags.get(REDIS_STATE_TAG) or loss.redis_state,
        run_id=context.run.run_id,
        restored_at=utc_now(),
    )


def nothing_restored(context: Any, reports: Sequence[RestoreReport]) -> None:
    """Say that a restore found every store healthy, and why that records nothing."""
    context.log.info(
        "all %d stores were already healthy in Redis: nothing restored, and no "
        "materialization recorded (the last restore stays the latest, with its story)",
        len(reports),
    )


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
    owners=OWNERS,
    description="What Redis, the JSON backup and the orders database hold for each store "
    "(status, page, last order id, source, age), the cache health in percent, the stores "
    "per status and what to do. Read-only; cache_loss_sensor records it on every change.",
)
def store_sync_positions(
    context: AssetExecutionContext, positions: PositionsResource
) -> MaterializeResult:
    with reported():
        report = status_report(positions.chain)
    context.log.info(
        "%d stores, cache health %g%%, Redis %s%s",
        len(report.stores),
        cache_health_percent(report),
        report.redis_state,
        f", loss event {report.loss.event_id}" if report.loss.event_id else "",
    )
    now = utc_now()
    standing = standing_for(context.instance, report, now, run_id=context.run.run_id)
    return MaterializeResult(metadata=status_metadata(report, now, standing))


@asset(
    key=RESTORED_SYNC_POSITIONS,
    deps=[STORE_SYNC_POSITIONS],
    group_name="positions",
    kinds={"redis", "python"},
    owners=OWNERS,
    pool=POSITIONS_POOL,
    output_required=False,
    description="Every store's position restored from the best layer (Redis, JSON backup, "
    "or computed from the orders database), verified on the API and written back to Redis "
    "and the backup. Materialize it to restore positions after a cache loss: the health of "
    "store_sync_positions and its checks are recorded again right after. Each "
    "materialization is one loss's story (when seen, the stores, the layer of each, how "
    "long); a restore that finds nothing to do, or an earlier restore under way, records "
    "none.",
)
def restored_sync_positions(
    context: AssetExecutionContext, positions: PositionsResource, ecomanager: EcoManagerResource
) -> Iterator[MaterializeResult]:
    if earlier := earlier_restores(context.instance, context.run.run_id):
        context.log.info(
            "%s is restoring the positions: this restore steps aside and writes nothing "
            "(one restore at a time); its result shows here when it ends. If it fails, "
            "materialize again.",
            named(earlier[0]),
        )
        context.instance.add_run_tags(
            context.run.run_id, {STEPPED_ASIDE_TAG: earlier[0].dagster_run.run_id}
        )
        return
    started = utc_now()
    with reported():
        loss = recovery.detect(positions.chain).loss
        reports = positions.chain.restore_all(ecomanager.clients())
        story = restore_story(context, loss, reports, started)
        log_health(context, positions.chain, story if all(r.ok for r in reports) else None)
    tag_recovered(context, reports)
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
    if story is None:
        nothing_restored(context, reports)
        return
    context.log.info(story.line(utc_now()))
    yield MaterializeResult(
        metadata={**story_metadata(story, utc_now()), **restore_metadata(reports)}
    )
