"""The positions' health as people read it: one row per store, counts per status, a
recommendation, all from one StatusReport.

The same report feeds store_sync_positions, its three checks, the sensor's live
records and the recovery's events, so none of them can disagree with another.
A store's status is its Redis position's (``unreachable`` when Redis does not answer):
a store missing from Redis is never "healthy", whatever the backup holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dagster import MetadataValue

from ecosync_pipeline.defs.metadata import table
from ecosync_pipeline.positions.chain import USABLE
from ecosync_pipeline.positions.health import StatusReport, StoreStatus

STATUSES = ("healthy", "missing", "reset", "stale", "ahead", "calculated", "unreachable")
"""Every status a store can show, in the order the counts are listed."""
# Short columns: the UI shows the table whole beside the asset's sidebar at 1,600 px.
STORE_COLUMNS = (
    "store",
    "status",
    "page",
    "last_id",
    "source",
    "age",
    "backup_page",
    "db_last_id",
)
RESTORE = "Materialize restored_sync_positions"


def store_status(report: StatusReport, row: StoreStatus) -> str:
    """The status a store shows: its Redis position's, or ``unreachable``."""
    return "unreachable" if report.redis_state == "unreachable" else row.status


def age(updated_at: datetime | None, now: datetime) -> str:
    """How old a position is, as people say it: '40 s', '12 min', '3 h 5 min', '2 d 4 h'."""
    if updated_at is None:
        return ""
    seconds = max(0, int((now - updated_at).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def store_rows(report: StatusReport, now: datetime) -> list[dict[str, Any]]:
    """One row per store: status, Redis page, last order id, source and age, the backup's
    page and the database's last order id."""
    rows = []
    for s in report.stores:
        cached = s.redis
        rows.append(
            {
                "store": s.store,
                "status": store_status(report, s),
                "page": cached.last_page if cached else None,
                "last_id": cached.target if cached else None,
                "source": cached.source if cached else None,
                "age": age(cached.updated_at if cached else None, now),
                "backup_page": s.json.last_page if s.json else None,
                "db_last_id": s.db_last_order_id,
            }
        )
    return rows


def status_counts(report: StatusReport) -> dict[str, int]:
    """How many stores show each status (every status listed, zeros included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for s in report.stores:
        counts[store_status(report, s)] += 1
    return counts


def cache_health_percent(report: StatusReport) -> float:
    """The share of stores whose Redis position is healthy, in percent (one decimal)."""
    return round(float(report.cache_health) * 100, 1)


def _named(stores: Sequence[str]) -> str:
    shown = ", ".join(stores[:5])
    return shown + (f" and {len(stores) - 5} more" if len(stores) > 5 else "")


def _stores_word(n: int) -> str:
    return "1 store" if n == 1 else f"{n} stores"


def recommendation(report: StatusReport) -> str:
    """What to do now, in one line, like the original admin page's recommendations."""
    if report.redis_state == "unreachable":
        return (
            "Redis is unreachable: syncs run from the JSON backup and the database meanwhile. "
            "Start Redis (or fix ECOSYNC_REDIS_URL); the cache_loss_sensor then restores "
            f"every position by itself, or {RESTORE}."
        )
    by_status: dict[str, list[str]] = {}
    for s in report.stores:
        by_status.setdefault(s.status, []).append(s.store)
    lost = by_status.get("missing", []) + by_status.get("reset", [])
    parts = []
    if lost:
        need = (
            "1 store needs its position"
            if len(lost) == 1
            else f"{len(lost)} stores need their positions"
        )
        parts.append(f"{need} restored ({_named(lost)}): {RESTORE}.")
    if ahead := by_status.get("ahead"):
        parts.append(
            f"{_stores_word(len(ahead))} ahead of the orders database ({_named(ahead)}): "
            f"syncs resume from the database; {RESTORE} to rewrite the caches from it."
        )
    if stale := by_status.get("stale"):
        parts.append(
            f"{_stores_word(len(stale))} behind the orders database ({_named(stale)}): the "
            f"next sync fixes it, or {RESTORE} now."
        )
    if new := by_status.get("calculated"):
        parts.append(
            f"{_stores_word(len(new))} without orders yet ({_named(new)}): materialize "
            "their new_orders partitions for a first sync."
        )
    if not parts:
        return f"All {_stores_word(len(report.stores))} healthy: nothing to do."
    return " ".join(parts)


def status_metadata(report: StatusReport, now: datetime) -> dict[str, Any]:
    """The metadata of store_sync_positions: the table, health in percent, counts, advice."""
    counts = status_counts(report)
    healthy = sum(1 for s in report.stores if s.status in USABLE)
    unreachable = report.redis_state == "unreachable"
    metadata: dict[str, Any] = {
        "recommendation": MetadataValue.text(recommendation(report)),
        "cache_health_percent": MetadataValue.float(cache_health_percent(report)),
        "stores_needing_attention": MetadataValue.int(
            len(report.stores) if unreachable else len(report.stores) - healthy
        ),
        **{f"stores_{status}": MetadataValue.int(n) for status, n in counts.items()},
        "stores": table(STORE_COLUMNS, store_rows(report, now)),
        "redis_state": MetadataValue.text(report.redis_state),
        "fingerprint": MetadataValue.text(fingerprint(report)),
        "backup_location": MetadataValue.path(report.backup_location),
        "dagster/row_count": MetadataValue.int(len(report.stores)),
    }
    if report.loss.event_id:
        metadata["loss_event"] = MetadataValue.text(report.loss.event_id)
    if report.backup_quarantined:
        metadata["backup_quarantined"] = MetadataValue.path(report.backup_quarantined)
    return metadata


def fingerprint(report: StatusReport) -> str:
    """A digest of what the health shows (statuses, sources, Redis state, loss event).

    The sensor records the health when this differs from the last recorded one; a page
    advancing while the store stays healthy is not a change (new_orders records each sync).
    """
    shown = [
        report.redis_state,
        report.loss.event_id,
        [
            (s.store, store_status(report, s), s.json_status, s.redis.source if s.redis else None)
            for s in report.stores
        ],
    ]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]
