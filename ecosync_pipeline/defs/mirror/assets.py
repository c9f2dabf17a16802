"""reconciled_orders and order_statuses: one materialization per store, many stores a run.

Each store of the run (one partition, or a range from the schedule's batches) runs on
its own: its reconciliation or refresh takes the store's lock, so a store whose sync is
running is skipped with a warning (the next tick takes it), and an error fails that
store alone, after the others are recorded.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import math
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)
from pydantic import Field
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.defs.catalog import orders_spec
from ecosync_pipeline.defs.failures import as_failure
from ecosync_pipeline.defs.keys import NEW_ORDERS, ORDER_STATUSES, RECONCILED_ORDERS
from ecosync_pipeline.defs.resources import EcoManagerResource, OrdersDatabaseResource
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import EcosyncError, StoreLocked
from ecosync_pipeline.mirror import (
    FreshnessResult,
    ReconcileResult,
    reconcile_store,
    refresh_statuses,
)

RUNS_PER_DAY = 24
"""The reconcile schedule's default is hourly: a run spends a 24th of the daily budget."""


class ReconcileConfig(Config):
    """Run config of a reconciled_orders run."""

    max_calls: int | None = Field(
        default=None,
        ge=1,
        description="API calls each store may spend in this run; default: its "
        f"reconcile_calls_per_day / {RUNS_PER_DAY} (the hourly schedule's share).",
    )


class RefreshConfig(Config):
    """Run config of an order_statuses run."""

    max_calls: int | None = Field(
        default=None, ge=1, description="Stop each store's refresh after this many calls."
    )


def reconcile_metadata(r: ReconcileResult) -> dict[str, Any]:
    """What one store's reconciliation run read, found and fixed."""
    c = r.counts
    return {
        "range_checked": MetadataValue.text(r.range_checked),
        "pages": MetadataValue.int(c.pages),
        "api_calls": MetadataValue.int(r.api_calls),
        "orders_checked": MetadataValue.int(c.checked),
        "missing": MetadataValue.int(c.missing),
        "fetched": MetadataValue.int(c.fetched),
        "flagged_deleted": MetadataValue.int(c.flagged_deleted),
        "updated": MetadataValue.int(c.updated),
        "sweep": MetadataValue.int(r.sweep),
        "sweep_pages": MetadataValue.int(r.sweep_pages),
        "sweep_complete": MetadataValue.int(int(r.sweep_complete)),
        "calls_left_today": MetadataValue.int(r.calls_left_today),
        "seconds": MetadataValue.float(float(r.seconds)),
    }


def refresh_metadata(r: FreshnessResult) -> dict[str, Any]:
    """What one store's status refresh read and changed."""
    c = r.counts
    return {
        "oldest_open_id": MetadataValue.int(r.oldest_open_id or 0),
        "open_before": MetadataValue.int(r.open_before),
        "open_after": MetadataValue.int(r.open_after),
        "pages": MetadataValue.int(c.pages),
        "api_calls": MetadataValue.int(r.api_calls),
        "updated": MetadataValue.int(c.updated),
        "missing": MetadataValue.int(c.missing),
        "flagged_deleted": MetadataValue.int(c.flagged_deleted),
        "seconds": MetadataValue.float(float(r.seconds)),
    }


def _each_store(
    context: AssetExecutionContext,
    ecomanager: EcoManagerResource,
    orders_db: OrdersDatabaseResource,
    key: AssetKey,
    run: Callable[[Store, EcoManagerClient, Engine], Any],
    metadata: Callable[[Any], dict[str, Any]],
) -> Iterator[AssetMaterialization]:
    failed: list[Failure] = []
    stores = list(context.partition_keys)
    for store in stores:
        try:
            configured = ecomanager.store(store)
            with ecomanager.client(configured) as client:
                result = run(configured, client, orders_db.engine)
        except StoreLocked as exc:
            context.log.warning("store %s: skipped: %s", store, exc)
            continue
        except EcosyncError as exc:
            context.log.error("store %s: %s: %s", store, type(exc).__name__, exc)
            failed.append(as_failure(exc, store))
            continue
        yield AssetMaterialization(asset_key=key, partition=store, metadata=metadata(result))
    if failed:
        lines = "\n".join(f"- {f.description}" for f in failed)
        raise Failure(
            description=f"{len(failed)} of {len(stores)} stores failed; the others were "
            f"recorded:\n{lines}",
            allow_retries=False,
        )


def _per_store(
    key: AssetKey, description: str, partitions: PartitionsDefinition
) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    """An orders asset read after new_orders, one partition per store, a backfill one run."""
    return multi_asset(
        name=key.to_user_string(),
        specs=[orders_spec(key, NEW_ORDERS, description)],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
    )


def build_reconciled_orders(partitions: PartitionsDefinition) -> AssetsDefinition:
    """The reconciliation of each store, one partition per store."""

    @_per_store(
        RECONCILED_ORDERS,
        "Each store's orders compared with EcoManager's by id sets, newest pages first "
        "at 100 a page, within a daily budget of calls: missing orders fetched, orders "
        "deleted upstream flagged (deleted_at), changed ones updated. The sweep carries "
        "on from run to run until page 1.",
        partitions,
    )
    def reconciled_orders(
        context: AssetExecutionContext,
        config: ReconcileConfig,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> Iterator[AssetMaterialization]:
        def run(store: Store, client: EcoManagerClient, engine: Engine) -> ReconcileResult:
            identifier = store.identifier
            calls = config.max_calls or math.ceil(store.reconcile_calls_per_day / RUNS_PER_DAY)
            result = reconcile_store(store, client=client, engine=engine, max_calls=calls)
            context.log.info(
                "store %s: ids %s, %d calls: %d missing (%d fetched), %d flagged deleted, "
                "%d updated",
                identifier,
                result.range_checked,
                result.api_calls,
                result.counts.missing,
                result.counts.fetched,
                result.counts.flagged_deleted,
                result.counts.updated,
            )
            return result

        yield from _each_store(
            context, ecomanager, orders_db, RECONCILED_ORDERS, run, reconcile_metadata
        )

    return reconciled_orders


def build_order_statuses(partitions: PartitionsDefinition) -> AssetsDefinition:
    """The status refresh of each store, one partition per store."""

    @_per_store(
        ORDER_STATUSES,
        "Each store's open orders (not in one of its final_states) re-read until they "
        "are final: from the page of the oldest open order to the end, at 100 a page.",
        partitions,
    )
    def order_statuses(
        context: AssetExecutionContext,
        config: RefreshConfig,
        ecomanager: EcoManagerResource,
        orders_db: OrdersDatabaseResource,
    ) -> Iterator[AssetMaterialization]:
        def run(store: Store, client: EcoManagerClient, engine: Engine) -> FreshnessResult:
            return refresh_statuses(store, client=client, engine=engine, max_calls=config.max_calls)

        yield from _each_store(
            context, ecomanager, orders_db, ORDER_STATUSES, run, refresh_metadata
        )

    return order_statuses
