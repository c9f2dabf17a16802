"""The positions' health judged: one row per store, counts per status, what to do, and the
verdicts of the three health checks, all from one StatusReport.

Every reader of the health (store_sync_positions and its checks, the sensor's records,
the recovery's events) judges through these functions, so none can disagree with
another. A store's status is its Redis position's (``unreachable`` when Redis does not
answer): a store missing from Redis is never "healthy", whatever the backup holds.
The advice names the action that restores positions in the words of its reader
(``Remedy``): the Dagster layer says "Materialize restored_sync_positions".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ecosync_pipeline.positions.chain import USABLE
from ecosync_pipeline.positions.health import StatusReport, StoreStatus
from ecosync_pipeline.positions.model import SyncPosition

Cell = str | int | float | bool | None
Row = dict[str, Cell]
Severity = Literal["error", "warn"]

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
CACHE_HEALTH_THRESHOLD = 80.0
"""Percent of the stores whose Redis position must be healthy."""
CACHE_HEALTH_ERROR_THRESHOLD = 50.0
"""Below this percent the cache health is an ERROR, not a WARN: half the stores or more
lost their positions (a flush, a restart without persistence: a total loss is 0%)."""
ERROR_STATUSES = frozenset({"missing", "reset", "ahead"})
WARN_STATUSES = frozenset({"stale", "unreachable"})


@dataclass(frozen=True)
class Remedy:
    """The actions the advice names, in the words of where it is read."""

    restore: str
    """What restores every position now, e.g. 'run `ecosync positions restore`'."""
    automatic: str = ""
    """What restores them by itself once Redis is back, if anything does."""
    under_way: str = ""
    """The restore already under way, named (e.g. 'run 48a7f1c2 of recover_sync_positions
    is restoring them (started)'): said instead of ``restore``, so nobody starts another."""

    @property
    def action(self) -> str:
        """What the advice asks for: waiting for the restore under way, else ``restore``."""
        return f"{self.under_way}: no click needed" if self.under_way else self.restore


@dataclass(frozen=True)
class Verdict:
    """One check's result: passed or not, how bad, why, and the figures behind it.

    ``advise`` says whether the recommendation goes with it (a failed check).
    """

    passed: bool
    severity: Severity
    description: str
    facts: dict[str, Cell] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    rows: tuple[Row, ...] = ()
    advise: bool = False


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


def store_rows(report: StatusReport, now: datetime) -> list[Row]:
    """One row per store (STORE_COLUMNS): status, Redis page, last order id, source and
    age, the backup's page and the database's last order id."""
    rows: list[Row] = []
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


def needing_attention(report: StatusReport) -> int:
    """Stores whose Redis position cannot be used as it is (all of them when unreachable)."""
    if report.redis_state == "unreachable":
        return len(report.stores)
    return sum(1 for s in report.stores if s.status not in USABLE)


def cache_health_percent(report: StatusReport) -> float:
    """The share of stores whose Redis position is healthy, in percent (one decimal)."""
    return round(float(report.cache_health) * 100, 1)


def _named(stores: Sequence[str]) -> str:
    shown = ", ".join(stores[:5])
    return shown + (f" and {len(stores) - 5} more" if len(stores) > 5 else "")


def _stores_word(n: int) -> str:
    return "1 store" if n == 1 else f"{n} stores"


def recommendation(report: StatusReport, remedy: Remedy) -> str:
    """What to do now, in one line, like the original admin page's recommendations."""
    restore = remedy.action
    if report.redis_state == "unreachable":
        then = f"{remedy.automatic}, or " if remedy.automatic else "then "
        return (
            "Redis is unreachable: syncs run from the JSON backup and the database meanwhile. "
            f"Start Redis (or fix ECOSYNC_REDIS_URL); {then}{restore}."
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
        parts.append(f"{need} restored ({_named(lost)}): {restore}.")
    if ahead := by_status.get("ahead"):
        parts.append(
            f"{_stores_word(len(ahead))} ahead of the orders database ({_named(ahead)}): "
            "syncs resume from the database; "
            + (
                f"{restore} (it rewrites the caches from it)."
                if remedy.under_way
                else f"{restore} to rewrite the caches from it."
            )
        )
    if stale := by_status.get("stale"):
        parts.append(
            f"{_stores_word(len(stale))} behind the orders database ({_named(stale)}): the "
            + (
                f"next sync fixes it, or the restore under way ({restore})."
                if remedy.under_way
                else f"next sync fixes it, or {restore} now."
            )
        )
    if new := by_status.get("calculated"):
        parts.append(
            f"{_stores_word(len(new))} without orders yet ({_named(new)}): materialize "
            "their new_orders partitions for a first sync."
        )
    if not parts:
        return f"All {_stores_word(len(report.stores))} healthy: nothing to do."
    return " ".join(parts)


def fingerprint(report: StatusReport) -> str:
    """A digest of what the health shows (statuses, sources, Redis state, loss event).

    A change of it is a change worth recording; a page advancing while the store stays
    healthy is not one (each sync records its own progress).
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


def positions_digest(report: StatusReport) -> str:
    """A digest of the figures in the table: every layer's page and last order id per store.

    A change of it means positions moved (a sync, a restore): the table is recorded again
    (at most once a minute), so what the UI shows is never older than that.
    """
    shown = [
        (
            s.store,
            [(p.last_page, p.target) if p else None for p in (s.redis, s.json)],
            s.db_last_order_id,
            s.db_order_count,
        )
        for s in report.stores
    ]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]


def judge_cache_health(report: StatusReport, remedy: Remedy) -> Verdict:
    """Fails when fewer than 80% of the stores have a healthy Redis position: a WARN, an
    ERROR below 50% (a total loss is 0%)."""
    percent = cache_health_percent(report)
    passed = percent >= CACHE_HEALTH_THRESHOLD
    unhealthy = [s.store for s in report.stores if s.status not in ("healthy", "calculated")]
    if report.redis_state == "unreachable":
        unhealthy = [s.store for s in report.stores]
    facts: dict[str, Cell] = {
        "cache_health_percent": percent,
        "redis_state": report.redis_state,
    }
    if unhealthy:
        facts["stores_needing_attention"] = ", ".join(unhealthy)
    healthy = len(report.stores) - len(unhealthy)
    state = "" if report.redis_state == "ok" else f", Redis {report.redis_state}"
    description = (
        f"cache health {percent:g}% ({healthy} of {len(report.stores)} healthy{state}; "
        f"passes from {CACHE_HEALTH_THRESHOLD:g}%, an error below "
        f"{CACHE_HEALTH_ERROR_THRESHOLD:g}%)"
    )
    if not passed:
        description += f". {recommendation(report, remedy)}"
    severity: Severity = "error" if percent < CACHE_HEALTH_ERROR_THRESHOLD else "warn"
    return Verdict(passed, severity, description, facts, advise=not passed)


POSITION_COLUMNS = ("store", "status", "backup", "db_last_order_id", "severity")


def judge_position_health(report: StatusReport, remedy: Remedy) -> Verdict:
    """Error if a store's Redis position is missing, reset or ahead; warn if stale or
    Redis is unreachable. A store without orders yet has nothing to lose: it passes."""
    rows: list[Row] = []
    errors: list[str] = []
    warnings: list[str] = []
    for s in report.stores:
        status = store_status(report, s)
        level = "error" if status in ERROR_STATUSES else "warn" if status in WARN_STATUSES else "ok"
        if level == "error":
            errors.append(f"{s.store} ({status})")
        elif level == "warn":
            warnings.append(f"{s.store} ({status})")
        rows.append(
            {
                "store": s.store,
                "status": status,
                "backup": s.json_status,
                "db_last_order_id": s.db_last_order_id,
                "severity": level,
            }
        )
    passed = not errors and not warnings
    if passed:
        new = sum(1 for r in rows if r["status"] == "calculated")
        description = f"all {len(rows)} stores healthy" + (
            f" ({new} without orders yet: their first sync starts at page 1)" if new else ""
        )
    else:
        found = [f"ERROR: {', '.join(errors)}"] if errors else []
        found += [f"WARN: {', '.join(warnings)}"] if warnings else []
        description = f"{'; '.join(found)}. {recommendation(report, remedy)}"
    return Verdict(
        passed,
        "error" if errors else "warn",
        description,
        {"errors": len(errors), "warnings": len(warnings)},
        POSITION_COLUMNS,
        tuple(rows),
        advise=not passed,
    )


def _describe(position: SyncPosition | None) -> str:
    return "none" if position is None else f"page {position.last_page}, id {position.target}"


AGREEMENT_COLUMNS = ("store", "redis", "backup", "database_last_order_id", "agree")


def judge_layer_agreement(report: StatusReport, remedy: Remedy) -> Verdict:
    """Fails (warn) when a store's layers disagree on its last order id or page."""
    if report.redis_state == "unreachable":
        return Verdict(
            False,
            "warn",
            "Redis is unreachable, so its positions could not be compared. "
            + recommendation(report, remedy),
            {"redis_state": "unreachable"},
        )
    rows: list[Row] = []
    disagree: list[str] = []
    for s in report.stores:
        ids = {p.target if p is not None else None for p in (s.redis, s.json)}
        ids.add(s.db_last_order_id)
        pages = {p.last_page if p is not None else None for p in (s.redis, s.json)}
        agree = len(ids) == 1 and len(pages) == 1
        if not agree:
            disagree.append(s.store)
        rows.append(
            {
                "store": s.store,
                "redis": _describe(s.redis),
                "backup": _describe(s.json),
                "database_last_order_id": s.db_last_order_id,
                "agree": agree,
            }
        )
    if not disagree:
        description = f"all {len(rows)} stores agree across Redis, the backup and the database"
    else:
        description = (
            f"layers disagree for {', '.join(disagree)}; the database is the truth. "
            + recommendation(report, remedy)
        )
    return Verdict(
        not disagree,
        "warn",
        description,
        {"disagreeing": len(disagree)},
        AGREEMENT_COLUMNS,
        tuple(rows),
        advise=bool(disagree),
    )
