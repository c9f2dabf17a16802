"""new_orders: the stores' syncs, one partition per store, many stores per run.

A run targets one store or a range of stores (the schedule's batches). The stores of the
run are synced concurrently by a few workers (``sync.batch``), each under its own
lock and rate limit; as each store finishes, its own materialization is recorded with its
own metadata (the SyncResult, numbers first so the UI plots them across runs), and its
``new_orders_complete`` check is evaluated in the same step, because a separate step is a
separate process and the process start costs more than the check. A store that fails
gets no materialization and fails the run after the others are recorded, naming each
failed store and what to do.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetRecordsFilter,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    Config,
    Failure,
    MetadataValue,
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
    STORE_TAG,
)
from ecosync_pipeline.defs.metadata import markdown_table
from ecosync_pipeline.defs.orders.checks import CHECK_DESCRIPTION, completeness_evaluation
from ecosync_pipeline.defs.resources import (
    EcoManagerResource,
    OrdersDatabaseResource,
    PositionsResource,
)
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


def sync_metadata(
    result: SyncResult,
    preview: Sequence[dict[str, Any]],
    order_count: int,
    quota: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of one store's sync: numbers the UI plots, the source, a preview, and
    the store's shared rate budget (calls used and left in each window) after it."""
    return {
        **(quota or {}),
        "store": result.store,
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
        "set_aside": MetadataValue.int(len(result.set_aside)),
        "set_aside_fields": MetadataValue.md(
            "\n".join(f"- {line}" for line in result.set_aside[:SET_ASIDE_SHOWN]) or "_none_"
        ),
        "dagster/row_count": MetadataValue.int(order_count),
        "preview": MetadataValue.md(
            markdown_table(PREVIEW_COLUMNS, preview) if preview else "_no new orders_"
        ),
    }


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
    context: AssetExecutionContext, outcomes: Sequence[StoreOutcome]
) -> Iterator[AssetCheckEvaluation]:
    """Each store's completeness result, judged against its materialization of this run.

    One lookup finds every store's latest materialization (this run's, recorded above):
    a lookup per store would be a round trip to the instance's storage for each.
    """
    checked = [o for o in outcomes if o.served is not None and o.summary is not None]
    if not checked:
        return
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=NEW_ORDERS, asset_partitions=[o.store for o in checked]),
        limit=len(checked),
    ).records
    latest: dict[str, Any] = {}
    for record in records:  # newest first
        partition = record.partition_key
        if partition is not None:
            latest.setdefault(partition, record)
    for o in checked:
        assert o.summary is not None and o.served is not None
        yield completeness_evaluation(o.summary, o.served, o.audit, latest.get(o.store))


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


def tag_store_run(context: AssetExecutionContext, stores: Sequence[str]) -> None:
    """Tag a run of one store ``ecosync/store=<STORE>``, whatever launched it.

    The schedule tags its runs when it asks for them; a Materialize in the UI, a backfill
    or `dagster asset materialize` does not, so the run tags itself as it starts, and the
    Runs page filters every run of a store by one tag. The run queue's one-run-per-store
    limit does not wait for this: it holds on dagster/partition, which every one-store
    run carries from its submission (data/dagster.yaml).
    """
    if len(stores) == 1 and context.run.tags.get(STORE_TAG) != stores[0]:
        context.instance.add_run_tags(context.run.run_id, {STORE_TAG: stores[0]})


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
    context: AssetExecutionContext, config: SyncConfig, runtime: Runtime
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """The run's stores synced, each store's materialization and check result recorded as
    it finishes; a Failure naming every store that failed, after the others."""
    stores = list(context.partition_keys)
    tag_store_run(context, stores)
    hold_instance_connections(context, stores)
    materialize = NEW_ORDERS in context.selected_asset_keys
    check = NEW_ORDERS_COMPLETE_KEY in context.selected_asset_check_keys
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
            check=check,
        ):
            if outcome.error is not None:
                failed.append(outcome)
                continue
            done.append(outcome)
            if materialize and outcome.result is not None:
                _log_result(context, outcome.result, alone)
                yield _materialization(outcome)
            unchecked.append(outcome)
            # Results recorded while the other stores sync, not all at the end.
            if check and len(unchecked) >= CHECKS_AT_ONCE:
                yield from _check_evaluations(context, unchecked)
                unchecked.clear()
    if check:
        yield from _check_evaluations(context, unchecked)
    if not alone:
        context.log.info(batch_summary(done, failed))
    if failed:
        raise batch_failure(failed, len(stores))


def build_new_orders(partitions: PartitionsDefinition) -> AssetsDefinition:
    """The new_orders asset over ``partitions`` (one per store), with its completeness check."""

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
            )
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
    ) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
        # The run's composition root, built by the positions resource over the other two.
        yield from sync_stores(context, config, positions.runtime)

    return new_orders
