"""The orders database: engine, schema and migrations, the merge rule, per-store reads, locks.

PostgreSQL (psycopg 3) in production, a SQLite file as the embedded default; the same
SQLAlchemy Core code runs on both.
"""

from __future__ import annotations

from ecosync_pipeline.storage.database import make_engine, normalize_url, ping, redact
from ecosync_pipeline.storage.dialect import advisory_key
from ecosync_pipeline.storage.dialect import sqlite_file as sqlite_path
from ecosync_pipeline.storage.locks import store_lock, store_lock_key
from ecosync_pipeline.storage.merge import (
    Gone,
    Served,
    UpsertCounts,
    merge_orders,
    upsert_orders,
)
from ecosync_pipeline.storage.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    is_current,
    migrate,
    upgrade_if_behind,
)
from ecosync_pipeline.storage.orders import (
    StoreSummary,
    duplicate_count,
    ensure_store,
    iter_order_ids,
    order_state,
    orders_after,
    reading,
    store_summaries,
    store_summary,
)
from ecosync_pipeline.storage.pages import OrderReader, settle_ties, transaction, write_page
from ecosync_pipeline.storage.schema import metadata, orders, stores

__all__ = [
    "Gone",
    "OrderReader",
    "Served",
    "merge_orders",
    "settle_ties",
    "reading",
    "StoreSummary",
    "UpsertCounts",
    "advisory_key",
    "alembic_config",
    "current_revision",
    "duplicate_count",
    "ensure_store",
    "head_revision",
    "is_current",
    "iter_order_ids",
    "make_engine",
    "metadata",
    "migrate",
    "normalize_url",
    "order_state",
    "orders",
    "orders_after",
    "ping",
    "redact",
    "sqlite_path",
    "store_lock",
    "store_lock_key",
    "store_summaries",
    "store_summary",
    "stores",
    "upgrade_if_behind",
    "transaction",
    "upsert_orders",
    "write_page",
]
