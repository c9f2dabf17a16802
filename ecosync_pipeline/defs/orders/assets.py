"""new_orders: one store's sync, one partition per store.

Materializing a partition runs ``Runtime.sync`` for that store: it resumes from the
store's verified position, fetches the new pages, upserts their orders and advances the
position after each commit. Its metadata is the SyncResult, numbers first so the UI
plots them across runs.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Backoff,
    Config,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RetryPolicy,
    asset,
)
from pydantic import Field

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.metadata import markdown_table
from ecosync_pipeline.defs.positions.assets import RESTORED_SYNC_POSITIONS
from ecosync_pipeline.defs.resources import EcosyncResource
from ecosync_pipeline.storage import orders_after, store_summary
from ecosync_pipeline.sync.engine import SyncResult

NEW_ORDERS = AssetKey("new_orders")
DEFAULT_BUDGET_SECONDS = 600.0
PREVIEW_ROWS = 10
# No customer names or phone numbers: metadata is visible to everyone with UI access.
PREVIEW_COLUMNS = ("order_id", "reference", "order_state", "wilaya", "total", "created_at")


class SyncConfig(Config):
    """Run config of a new_orders run."""

    budget_seconds: float = Field(
        default=DEFAULT_BUDGET_SECONDS,
        gt=0,
        description="Stop cleanly after this many seconds; the next run continues from the "
        "committed position. The default fits inside the 15-minute schedule.",
    )


def sync_metadata(
    result: SyncResult, preview: list[dict[str, Any]], order_count: int
) -> dict[str, Any]:
    """The metadata of one store's sync: numbers the UI plots, the source, a preview."""
    return {
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
        "dagster/row_count": MetadataValue.int(order_count),
        "preview": MetadataValue.md(
            markdown_table(PREVIEW_COLUMNS, preview) if preview else "_no new orders_"
        ),
    }


def build_new_orders(partitions: PartitionsDefinition) -> AssetsDefinition:
    """The new_orders asset over ``partitions`` (one per store)."""

    @asset(
        key=NEW_ORDERS,
        partitions_def=partitions,
        deps=[RESTORED_SYNC_POSITIONS],
        group_name="orders",
        kinds={"python", "sql"},
        # A transient failure (EcoManager or the database unavailable) is retried: the
        # retry resumes from the last committed page, and the upsert makes a re-read
        # harmless. Failures that a retry cannot fix are raised with retries disallowed.
        retry_policy=RetryPolicy(max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL),
        description="The orders of one store (a partition), synced page by page from "
        "EcoManager into the orders database from the store's verified sync position.",
    )
    def new_orders(
        context: AssetExecutionContext, config: SyncConfig, ecosync: EcosyncResource
    ) -> MaterializeResult:
        store = context.partition_key
        with reported(store), ecosync.runtime() as runtime:
            result = runtime.sync(store, budget_seconds=config.budget_seconds)
            preview = orders_after(runtime.engine, store, result.last_order_id_before, PREVIEW_ROWS)
            count = store_summary(runtime.engine, store).order_count
        context.log.info(
            "store %s: pages %d..%d from %s, %d new and %d updated orders, %d API calls, %.1f s%s",
            store,
            result.from_page,
            result.to_page,
            result.position_source,
            result.orders_new,
            result.orders_updated,
            result.api_calls,
            result.seconds,
            " (stopped by the time budget; the next run continues)"
            if result.stopped_by_budget
            else "",
        )
        return MaterializeResult(metadata=sync_metadata(result, preview, count))

    return new_orders
