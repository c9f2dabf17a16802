"""recover_sync_positions: the recovery of every store's position, one op per step.

    detect_cache_loss --+--> load_json_backup -------+
                        +--> calculate_from_database -+--> verify_positions --> write_positions
                        +-----------------------------+

Each op calls one function of ecosync_pipeline.positions.recovery, on the run's
resources (built once for the run: one engine, one Redis client, one chain). The job
runs in one process (the steps are sequential and small, and a recovery should finish within
seconds of the loss). A store that cannot be recovered fails the run, naming the store
and why, after every other store's position has been written. The last step records
the run as asset events: a materialization of restored_sync_positions, and the health
of store_sync_positions (a materialization and its three checks) as the restore left it.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from dagster import (
    AssetMaterialization,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)

from ecosync_pipeline.defs.failures import as_failure, reported
from ecosync_pipeline.defs.keys import (
    POSITIONS_POOL,
    RECOVER_SYNC_POSITIONS_JOB,
    RECOVERY_TAG,
    RESTORED_SYNC_POSITIONS,
)
from ecosync_pipeline.defs.positions.assets import (
    log_health,
    nothing_restored,
    restore_metadata,
    restore_story,
    tag_recovered,
    unrecovered_failure,
)
from ecosync_pipeline.defs.positions.restores import named, wait_for_earlier
from ecosync_pipeline.defs.positions.story import story_metadata
from ecosync_pipeline.defs.resources import EcoManagerResource, PositionsResource
from ecosync_pipeline.positions import recovery
from ecosync_pipeline.positions.database_layer import DatabaseRead
from ecosync_pipeline.positions.factory import cursor_stores
from ecosync_pipeline.positions.layer import LayerRead
from ecosync_pipeline.positions.model import utc_now
from ecosync_pipeline.positions.outcomes import RestoreReport, Snapshot


@op(
    description="Wait for any restore launched earlier to end (one restore at a time), then "
    "probe Redis once (every key, the sentinel, the run_id) and name the loss."
)
def detect_cache_loss(
    context: OpExecutionContext, positions: PositionsResource
) -> recovery.Detection:
    wait_for_earlier(context.instance, context.run.run_id, context.log.info)
    record = context.instance.get_run_record_by_id(context.run.run_id)
    if record is not None:
        # The UI names this run as the restore under way from now on, not "Materialize".
        with reported():
            log_health(context, positions.chain, under_way=f"{named(record)} is restoring them")
    with reported():
        detection = recovery.detect(positions.chain)
        cursor_only = cursor_stores(positions.ecomanager.stores())
    if cursor_only:
        context.log.info(
            "cursor-mode stores %s keep no position (they read down to the table's last "
            "id): nothing to recover, a cache loss costs them nothing",
            ", ".join(cursor_only),
        )
    loss = detection.loss
    context.log.info(
        "Redis %s; %d of %d expected stores without a key%s",
        loss.redis_state,
        len(loss.missing),
        loss.expected,
        f"; loss event {loss.event_id}" if loss.event_id else "",
    )
    context.add_output_metadata(
        {
            "redis_state": MetadataValue.text(loss.redis_state),
            "stores_without_key": MetadataValue.int(len(loss.missing)),
            "loss_event": MetadataValue.text(loss.event_id or "none"),
            "cursor_stores_nothing_to_recover": MetadataValue.text(
                ", ".join(cursor_only) or "none"
            ),
        }
    )
    return detection


@op(
    ins={"detected": In(Nothing)},
    description="Read every store's entry in the JSON backup (layer 2).",
)
def load_json_backup(context: OpExecutionContext, positions: PositionsResource) -> LayerRead:
    chain = positions.chain
    backup = chain.backup.read_many(chain.stores)
    location = chain.backup.location
    if not backup.ok:
        context.log.warning("backup %s cannot be read: %s", location, backup.error)
    context.log.info("backup %s holds %d store positions", location, len(backup.positions))
    context.add_output_metadata(
        {
            "stores_in_backup": MetadataValue.int(len(backup.positions)),
            "backup_location": MetadataValue.path(location),
        }
    )
    return backup


@op(
    ins={"detected": In(Nothing)},
    description="Read every store's last order id and order count from the orders database "
    "and the position they give (layer 3, a hint the next step locates on the API).",
)
def calculate_from_database(
    context: OpExecutionContext, positions: PositionsResource
) -> DatabaseRead:
    chain = positions.chain
    database = chain.database.read_many(chain.stores)
    if database.failure is not None:
        raise as_failure(database.failure)
    context.log.info("orders database: %d stores with orders", len(database.summaries))
    context.add_output_metadata({"stores_with_orders": MetadataValue.int(len(database.summaries))})
    return database


@op(
    description="Per store, take the first layer that agrees with the database and verify "
    "it on the API (one fetch when it is right, a few when it is not). Writes nothing."
)
def verify_positions(
    context: OpExecutionContext,
    positions: PositionsResource,
    ecomanager: EcoManagerResource,
    detection: recovery.Detection,
    backup: LayerRead,
    database: DatabaseRead,
) -> list[RestoreReport]:
    snapshot = Snapshot(detection.redis, backup, database)
    with reported():
        reports = positions.chain.verify_all(snapshot, ecomanager.clients())
    for r in reports:
        if r.ok and r.after is not None:
            context.log.info(
                "store %s: verified from %s at page %d (last order id %s, %d API calls)",
                r.store,
                r.restored_from,
                r.after.last_page,
                r.after.target,
                r.api_calls,
            )
        else:
            context.log.error("store %s: cannot be recovered: %s", r.store, r.error)
    context.add_output_metadata(
        {
            "verified": MetadataValue.int(sum(r.ok for r in reports)),
            "failed": MetadataValue.int(sum(not r.ok for r in reports)),
        }
    )
    return reports


@op(
    pool=POSITIONS_POOL,
    description="Write every verified position to Redis (one transaction) and the JSON "
    "backup; fail, naming each store that could not be recovered, after writing the rest.",
)
def write_positions(
    context: OpExecutionContext,
    positions: PositionsResource,
    detection: recovery.Detection,
    reports: list[RestoreReport],
) -> recovery.RecoveryCounts:
    with reported():
        outcome = positions.chain.write_restored(reports)
        ok = all(r.ok for r in reports) and outcome.redis
        story = restore_story(context, detection.loss, reports, detection.seen_at)
        # The UI shows the positions as they are now, not as the last Materialize left them.
        log_health(context, positions.chain, story if ok else None)
    counts = recovery.count_sources(reports)
    tag_recovered(context, reports)
    context.log.info(
        "%d positions written (Redis %s, backup %s): %d already healthy, %d from Redis, "
        "%d from the JSON backup, %d from the database, %d first syncs, %d failed",
        outcome.written,
        "ok" if outcome.redis else "skipped",
        "ok" if outcome.json else "failed",
        counts.already_healthy,
        counts.from_redis,
        counts.from_json,
        counts.from_database,
        counts.calculated,
        counts.failed,
    )
    if not outcome.redis:
        context.log.warning(
            "Redis did not take the positions (unreachable?); syncs resume "
            "from the JSON backup until it is back, then rewrite it"
        )
    if outcome.json_error:
        context.log.warning("the JSON backup was not written: %s", outcome.json_error)
    if counts.failed:
        raise unrecovered_failure(reports, "recovered")
    metadata = restore_metadata(reports)
    if story is None:
        nothing_restored(context, reports)
    elif outcome.redis:
        context.log.info(story.line(utc_now()))
        context.log_event(
            AssetMaterialization(
                asset_key=RESTORED_SYNC_POSITIONS,
                description=story.line(utc_now()),
                metadata={**story_metadata(story, utc_now()), **metadata},
            )
        )
    metadata["redis_written"] = MetadataValue.bool(outcome.redis)
    metadata["json_written"] = MetadataValue.bool(outcome.json)
    context.add_output_metadata(metadata)
    return counts


@job(
    name=RECOVER_SYNC_POSITIONS_JOB,
    executor_def=in_process_executor,
    tags={RECOVERY_TAG: "true"},
    description="Recover every store's sync position after a cache loss: detect, load the "
    "JSON backup, calculate from the orders database, verify on the API, write Redis and "
    "the backup. Launched by cache_loss_sensor; safe to launch by hand at any time.",
)
def recover_sync_positions() -> None:
    detection = detect_cache_loss()
    backup = load_json_backup(detection)
    database = calculate_from_database(detection)
    write_positions(detection, verify_positions(detection, backup, database))
