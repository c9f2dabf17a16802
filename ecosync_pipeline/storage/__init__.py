"""The orders database: engine, schema and migrations, the page upsert, per-store reads, locks.

PostgreSQL (psycopg 3) in production, a SQLite file as the embedded default; the same
SQLAlchemy Core code runs on both.
"""

from __future__ import annotations

from ecosync_pipeline.storage.database import make_engine, normalize_url, ping, redact, sqlite_path
from ecosync_pipeline.storage.locks import advisory_key, store_lock, store_lock_key
from ecosync_pipeline.storage.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    current_version,
    migrate,
)
from ecosync_pipeline.storage.orders import (
    StoreSummary,
    UpsertCounts,
    duplicate_count,
    ensure_store,
    iter_order_ids,
    order_state,
    orders_after,
    store_summaries,
    store_summary,
    upsert_orders,
)
from ecosync_pipeline.storage.schema import metadata, orders, schema_version, stores

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "StoreSummary",
    "UpsertCounts",
    "advisory_key",
    "current_version",
    "duplicate_count",
    "ensure_store",
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
    "schema_version",
    "sqlite_path",
    "store_lock",
    "store_lock_key",
    "store_summaries",
    "store_summary",
    "stores",
    "upsert_orders",
]
