"""new_orders: the stores' syncs, one partition per store, many stores per run.

A run targets one store or a range of stores (the schedule's batches). The stores of the
run are synced concurrently by a few workers (``sync.batch``), each under its own
lock and rate limit; as each store finishes, its own materialization is recorded with its
own metadata (the SyncResult, numbers first so the UI plots them across runs), and both
its checks, ``new_orders_complete`` and ``store_freshness``, are evaluated in the same
step: a separate step is a separate process, whose start costs more than the checks, and
a check of the run's own step is never "not evaluated" or skipped after a sync. A store
that fails gets no materialization (its freshness is still judged, on its previous
sync) and fails the run after the others are recorded, naming each failed store and what
to do. The run carries the tag ``ecosync/store.<STORE>=1`` of each of its stores.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    Config,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    RetryPolicy,
    multi_asset,
)
from pydantic import Field

from ecosync_pipeline.defs.catalog import orders_spec
from ecosync_pipeline.defs.failures import as_failure
from ecosync_pipeline.defs.keys import (
    NEW_ORDERS,
    NEW_ORDERS_COMPLETE,
    NEW_ORDERS_COMPLETE_KEY,
    RESTORED_SYNC_POSITIONS,
    STORE_FRESHNESS,
    STORE_FRESHNESS_KEY,
)
from ecosync_pipeline.defs.metadata import markdown_table
from ecosync_pipeline.defs.options import DEFAULT_FRESHNESS_MINUTES
from ecosync_pipeline.defs.orders.checks import CHECK_DESCRIPTION, completeness_evaluation
from ecosync_pipeline.defs.orders.freshness import (
    freshness_description,
    freshness_evaluation,
    latest_syncs,
)
from ecosync_pipeline.defs.partitions import no_store_failure, runs_link, tag_run_with_stores
from ecosync_pipeline.defs.resources import (
    EcoManagerResource,
    OrdersDatabaseResource,
    PositionsResource,
)
from ecosync_pipeline.ecomanager.budget import Quota
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.sync.batch import DEFAULT_WORKERS, MAX_WORKERS, StoreOutcome, sync_batch
from ecosync_pipeline.sync.engine import SyncResult

DEFAULT_BUDGET_SECONDS = 600.0
# No customer names or phone numbers: metadata is visible to everyone with UI access.
PREVIEW_COLUMNS = ("order_id", "reference", "order_state", "wilaya", "total", "created_at")


class SyncConfig(Config):
    """Run config of a new_orders run."""

    budget_seconds: float = Field(
        default=DEFAULT_BUDGET_SECONDS,
        gt=0,
        description="Stop each store cleanly after this many seconds; the next run continues "
        "from the committed position. The default fits inside the 15-minute schedule.",
    )
    workers: int = Field(
        default=DEFAULT_WORKERS,
        ge=1,
        le=MAX_WORKERS,
        description="Stores of the run synced at the same time (threads of the run's process).",
    )


CHECKS_AT_ONCE = 25
"""Stores whose check results are recorded together: one lookup of their materializations."""
SET_ASIDE_SHOWN = 50
"""Set-aside fields listed in a run's metadata (all of them are in its log)."""


def budget_text(quota: Quota) -> str:
    """The store's shared rate budget in one line: calls used of each window's limit."""
    windows = ", ".join(f"{w.window} {w.used:,}/{w.limit:,}" for w in quota.windows)
    where = (
        "in Redis, shared by every process"
        if quota.mode == "redis"
        else ("by this process alone: Redis did not answer")
    )
    return (
        f"calls used of the limit: {windows}; {quota.window('day').left:,} left today "
        f"(counted {where})"
    )


def sync_metadata(
    result: SyncResult,
    preview: Sequence[dict[str, Any]],
    order_count: int,
    quota: Quota | None = None,
) -> dict[str, Any]:
    """The metadata of one store's sync: numbers the UI plots, the source, a preview, and
    the store's shared rate budget after it (one entry, last).

    ``orders_in_database`` is this store's count: Dagster's row count (dagster/row_count)
    would stand for the whole table on the asset's page, and one store's count is not it.
    """
    metadata: dict[str, Any] = {
        "store": result.store,
        # One click from a store's sync to every run that synced, reconciled, refreshed or
        # recovered it, however it was launched.
        "runs_of_this_store": MetadataValue.url(runs_link(result.store)),
        "pages_fetched": MetadataValue.int(result.pages_fetched),
        "api_calls": MetadataValue.int(result.api_calls),
        "verification_calls": MetadataValue.int(result.verification_calls),
        "orders_new": MetadataValue.int(result.orders_new),
        "orders_updated": MetadataValue.int(result.orders_updated),
        "from_page": MetadataValue.int(result.from_page),
        "to_page": MetadataValue.int(result.to_page),
        "position_source": MetadataValue.text(result.position_source),
        "seconds": MetadataValue.float(float(result.seconds)),
        # 1/0 rather than a bool: the UI plots numbers only.
        "stopped_by_budget": MetadataValue.int(int(result.stopped_by_budget)),
        "reached_end": MetadataValue.int(int(result.reached_end)),
        "last_order_id": MetadataValue.int(result.last_order_id or 0),
        "orders_in_database": MetadataValue.int(order_count),
        "set_aside": MetadataValue.int(len(result.set_aside)),
        "set_aside_fields": MetadataValue.md(
            "\n".join(f"- {line}" for line in result.set_aside[:SET_ASIDE_SHOWN]) or "_none_"
        ),
        "preview": MetadataValue.md(
            markdown_table(PREVIEW_COLUMNS, preview) if preview else "_no new orders_"
        ),
    }
    if quota is not None:
        metadata["rate_budget"] = MetadataValue.text(budget_text(quota))
    return metadata


def _log_result(context: AssetExecutionContext, result: SyncResult, alone: bool) -> None:
    for line in result.set_aside:
        context.log.warning(line)
    if not alone:
        # In a batch, each store's figures are in its materialization; a line per store
        # would be most of the run's event log (each line is a row in the instance).
        return
    context.log.info(
        "store %s: pages %d..%d from %s, %d new and %d updated orders, %d API calls, %.1f s%s",
        result.store,
        result.from_page,
        result.to_page,
        result.position_source,
        result.orders_new,
        result.orders_updated,
        result.api_calls,
        result.seconds,
        " (stopped by the time budget; the next run continues)" if result.stopped_by_budget else "",
    )


def _materialization(outcome: StoreOutcome) -> AssetMaterialization:
    assert outcome.result is not None and outcome.summary is not None
    return AssetMaterialization(
        asset_key=NEW_ORDERS,
        partition=outcome.store,
        metadata=sync_metadata(
            outcome.result, outcome.preview, outcome.summary.order_count, outcome.quota
        ),
    )


def _check_evaluations(
    context: AssetExecutionContext, outcomes: Sequence[StoreOutcome], freshness_minutes: int
) -> Iterator[AssetCheckEvaluation]:
    """Each store's check results, judged against its latest materialization (this run's,
    recorded above, for a store just synced; its previous one for a store that failed).

    One lookup finds every store's latest materialization: a lookup per store would be a
    round trip to the instance's storage for each.
    """
    checks = context.selected_asset_check_keys
    if not outcomes or not checks:
        return
    latest = latest_syncs(context.instance, [o.store for o in outcomes])
    now = time.time()
    for o in outcomes:
        record = latest.get(o.store)
        if STORE_FRESHNESS_KEY in checks and record is not None:
            yield freshness_evaluation(o.store, record, now, freshness_minutes)
        complete = o.error is None and o.summary is not None and o.served is not None
        if NEW_ORDERS_COMPLETE_KEY in checks and complete:
            assert o.summary is not None and o.served is not None
            yield completeness_evaluation(o.summary, o.served, o.audit, record)


def check_outputs(context: AssetExecutionContext) -> Iterator[Output[None]]:
    """An output for each check the run selected: the step recorded each store's result as
    an evaluation of its own (a partition each), and Dagster logs "did not yield or return
    expected outputs" for a check whose output is missing (as AssetCheckResult yields it)."""
    for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
        yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


@contextmanager
def _quiet_store_lines(many: bool) -> Iterator[None]:
    """In a batch, the core's per-store INFO lines stay out of the event log; warnings stay."""
    core = logging.getLogger("ecosync_pipeline")
    previous = core.level
    if many:
        core.setLevel(logging.WARNING)
    try:
        yield
    finally:
        core.setLevel(previous)


def batch_summary(done: Sequence[StoreOutcome], failed: Sequence[StoreOutcome]) -> str:
    """One line for a batch: stores synced, orders, API calls, and the stores that failed."""
    results = [o.result for o in done if o.result is not None]
    line = (
        f"{len(done)} of {len(done) + len(failed)} stores synced: "
        f"{sum(r.orders_new for r in results)} new and {sum(r.orders_updated for r in results)} "
        f"updated orders, {sum(r.api_calls for r in results)} API calls"
    )
    if failed:
        line += f"; failed: {', '.join(o.store for o in failed)}"
    return line


def batch_failure(failed: Sequence[StoreOutcome], total: int) -> Failure:
    """One Failure for the run naming every store that failed, each with its remedy."""
    failures = [as_failure(o.error, o.store) for o in failed if o.error is not None]
    if len(failures) == 1 and total == 1:
        return failures[0]
    lines = "\n".join(f"- {f.description}" for f in failures)
    return Failure(
        description=f"{len(failures)} of {total} stores failed; the others were synced and "
        f"recorded:\n{lines}",
        metadata={
            "failed_stores": ", ".join(o.store for o in failed),
            "errors": ", ".join(sorted({type(o.error).__name__ for o in failed})),
        },
        # A retry would sync the whole range again; the next tick retries the failed ones.
        allow_retries=False,
    )


def hold_instance_connections(context: AssetExecutionContext, stores: Sequence[str]) -> None:
    """Keep the instance's database connections open for the rest of a run of many stores.

    A store of the batch writes about three events (its materialization, its check);
    dagster-postgres opens and closes a connection for each write, which made up most of
    a hundred-store run's time (PgBouncer, data/pgbouncer.ini, makes each connection
    cheaper; holding one is cheaper still). Holding one connection per storage for the
    run is what Dagster does for its webserver; no statement timeout (0), as in a run.
    """
    if len(stores) > 1:
        context.instance.optimize_for_webserver(
            statement_timeout=0, pool_recycle=3600, max_overflow=2
        )


def sync_stores(
    context: AssetExecutionContext,
    config: SyncConfig,
    runtime: Runtime,
    freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES,
) -> Iterator[AssetMaterialization | AssetCheckEvaluation | Output[None]]:
    """The run's stores synced, each store's materialization and check results recorded as
    it finishes; a Failure naming every store that failed, after the others."""
    stores = list(context.partition_keys)
    if not stores:
        raise no_store_failure(context.instance, context.run)
    # The schedule's runs carry the tags from their submission; a backfill from the UI or
    # `dagster asset materialize` does not, so the run tags itself as it starts. The run
    # queue's one-run-per-store limit holds on dagster/partition (data/dagster.yaml).
    tag_run_with_stores(context.instance, context.run, stores)
    hold_instance_connections(context, stores)
    materialize = NEW_ORDERS in context.selected_asset_keys
    check = bool(context.selected_asset_check_keys)
    done: list[StoreOutcome] = []
    failed: list[StoreOutcome] = []
    unchecked: list[StoreOutcome] = []
    alone = len(stores) == 1
    with _quiet_store_lines(not alone):
        for outcome in sync_batch(
            runtime,
            stores,
            workers=config.workers,
            budget_seconds=config.budget_seconds,
            sync=materialize,
            check=NEW_ORDERS_COMPLETE_KEY in context.selected_asset_check_keys,
        ):
            (failed if outcome.error is not None else done).append(outcome)
            if outcome.error is None and materialize and outcome.result is not None:
                _log_result(context, outcome.result, alone)
                yield _materialization(outcome)
            unchecked.append(outcome)
            # Results recorded while the other stores sync, not all at the end.
            if check and len(unchecked) >= CHECKS_AT_ONCE:
                yield from _check_evaluations(context, unchecked, freshness_minutes)
                unchecked.clear()
    yield from _check_evaluations(context, unchecked, freshness_minutes)
    yield from check_outputs(context)
    if not alone:
        context.log.info(batch_summary(done, failed))
    if failed:
        raise batch_failure(failed, len(stores))


def build_new_orders(
    partitions: PartitionsDefinition, freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES
) -> AssetsDefinition:
    """The new_orders asset over ``partitions`` (one per store), with its two checks, both
    per store: completeness, and freshness over ``freshness_minutes``."""

    @multi_asset(
        name=NEW_ORDERS.to_user_string(),
        specs=[
            orders_spec(
                NEW_ORDERS,
                RESTORED_SYNC_POSITIONS,
                "The orders of each store (a partition), synced page by page from EcoManager "
                "into the orders database from the store's verified sync position. One run "
                "syncs one store or a batch of them.",
            )
        ],
        check_specs=[
            AssetCheckSpec(
                NEW_ORDERS_COMPLETE,
                asset=NEW_ORDERS,
                partitions_def=partitions,
                description=CHECK_DESCRIPTION,
            ),
            AssetCheckSpec(
                STORE_FRESHNESS,
                asset=NEW_ORDERS,
                partitions_def=partitions,
                description=freshness_description(freshness_minutes),
            ),
        ],
        partitions_def=partitions,
        # A backfill (UI or `dagster asset materialize --partition-range`) of many stores is
        # one run, its stores synced side by side as the schedule's batches are.
        backfill_policy=BackfillPolicy.single_run(),
        can_subset=True,
        # A transient failure of a one-store run (EcoManager or the database unavailable)
        # is retried: the retry resumes from the last committed page, and the upsert makes
        # a re-read harmless. Failures that a retry cannot fix disallow retries.
        retry_policy=RetryPolicy(max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL),
    )
    def new_orders(
        context: AssetExecutionContext,
        config: SyncConfig,
        positions: PositionsResource,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> Iterator[AssetMaterialization | AssetCheckEvaluation | Output[None]]:
        # The run's composition root, built by the positions resource over the other two.
        yield from sync_stores(context, config, positions.runtime, freshness_minutes)

    return new_orders
