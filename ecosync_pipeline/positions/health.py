"""Loss detection and position health: is Redis still holding what we wrote?

``probe`` is the cheap check a sensor runs every tick: one Redis round trip (MGET of every
store's key, the sentinel hash, INFO server), no database, no file.

Loss events and their ids
-------------------------
A sensor must launch one recovery per loss, however many ticks see it, and a new one
for the next loss. ``detect_cache_loss`` names each loss with a stable ``event_id``:

- flushed: the sentinel is gone while positions are expected (the caller saw a
  generation before, keys remain, or the database has orders), or its generation
  differs from the one the caller saw last (the sentinel was lost and recreated by a
  write in between). The id is ``flushed:<last generation seen>`` (or, when the caller
  never saw one, ``flushed:run-<redis run_id>``): the lost generation never comes back,
  so every tick names the same event, and the generation written after the restore is
  what the next flush will name.
- restarted: the sentinel survived (persistence) but Redis runs under another run_id.
  The id is ``restarted:<generation>:<run_id now>``; the next position write records
  the new run_id, which ends the event.
- missing: the sentinel is there, but stores it lists (or stores with orders, when the
  database summaries are given) have no key: deleted, expired or evicted. The id is
  ``missing:<generation>:<epoch>:<digest of the missing stores>``; every recovery write
  bumps the epoch, so the same stores lost again later are a new event.

The caller keeps ``LossReport.cursor`` (the generation last seen) and passes it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from ecosync_pipeline.config import Store
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.codec import format_timestamp
from ecosync_pipeline.positions.model import PositionStatus, SyncPosition, utc_now
from ecosync_pipeline.positions.redis_layer import RedisLayer, RedisSnapshot
from ecosync_pipeline.storage import StoreSummary

RedisState = Literal["ok", "flushed", "restarted", "unreachable"]
HEALTHY_STATUSES: frozenset[PositionStatus] = frozenset({"healthy", "calculated"})


def _ids(stores: Iterable[Store | str]) -> list[str]:
    return [s.identifier if isinstance(s, Store) else s for s in stores]


def probe(redis: RedisLayer, stores: Iterable[Store | str]) -> RedisSnapshot:
    """Every store's key, the sentinel and the run_id, in ONE Redis round trip."""
    return redis.snapshot(_ids(stores))


@dataclass(frozen=True)
class LossReport:
    """What a probe says about Redis: its state, the stores without a key, the event id."""

    redis_state: RedisState
    missing: tuple[str, ...]
    event_id: str | None
    cursor: str
    generation: str | None
    run_id: str | None
    checked_at: datetime
    expected: int

    @property
    def flushed(self) -> bool:
        return self.redis_state == "flushed"

    @property
    def restarted(self) -> bool:
        return self.redis_state == "restarted"

    @property
    def unreachable(self) -> bool:
        return self.redis_state == "unreachable"

    @property
    def lost(self) -> bool:
        """Positions were lost (a flush, or keys gone): a recovery is due."""
        return self.flushed or bool(self.missing)


def _digest(stores: Sequence[str]) -> str:
    return hashlib.sha256(",".join(sorted(stores)).encode()).hexdigest()[:12]


def detect_cache_loss(
    redis: RedisLayer,
    stores: Iterable[Store | str],
    *,
    cursor: str | None = None,
    summaries: Mapping[str, StoreSummary] | None = None,
    snapshot: RedisSnapshot | None = None,
) -> LossReport:
    """Classify Redis (ok, flushed, restarted, unreachable) and name the loss event, if any.

    ``cursor`` is the previous report's cursor; ``summaries`` (optional, from the orders
    database) make stores with orders count as expected; ``snapshot`` reuses a probe.
    """
    ids = _ids(stores)
    snap = snapshot if snapshot is not None else redis.snapshot(ids)
    previous = cursor or None
    with_orders = {s for s, v in (summaries or {}).items() if v.order_count > 0}
    now = utc_now()
    if not snap.available:
        return LossReport("unreachable", (), None, previous or "", None, None, now, 0)
    sentinel = snap.sentinel
    written = sentinel.stores if sentinel is not None else frozenset()
    expected = [s for s in ids if s in written or s in with_orders]
    missing = tuple(s for s in expected if s not in snap.positions)
    generation = sentinel.generation if sentinel is not None else None
    new_cursor = generation or previous or ""
    lost_sentinel = sentinel is None and (
        previous is not None or bool(snap.positions) or bool(with_orders & set(ids))
    )
    replaced = sentinel is not None and previous is not None and generation != previous
    if lost_sentinel or replaced:
        if sentinel is None:
            missing = tuple(
                s
                for s in ids
                if s not in snap.positions and (s in with_orders or summaries is None)
            )
        name = previous or f"run-{snap.run_id or 'unknown'}"
        return LossReport(
            "flushed",
            missing,
            f"flushed:{name}",
            new_cursor,
            generation,
            snap.run_id,
            now,
            len(expected),
        )
    if sentinel is not None and snap.restarted:
        return LossReport(
            "restarted",
            missing,
            f"restarted:{sentinel.generation}:{snap.run_id}",
            new_cursor,
            generation,
            snap.run_id,
            now,
            len(expected),
        )
    event = None
    if missing and sentinel is not None:
        event = f"missing:{sentinel.generation}:{sentinel.epoch}:{_digest(missing)}"
    return LossReport("ok", missing, event, new_cursor, generation, snap.run_id, now, len(expected))


def classify(position: SyncPosition | None, summary: StoreSummary | None) -> PositionStatus:
    """A layer's position for one store compared with the orders database."""
    db_last = summary.last_order_id if summary is not None and summary.order_count else None
    if db_last is None:
        if position is None or position.target is None:
            return "calculated"
        return "ahead"
    if position is None:
        return "missing"
    target = position.target
    if target is None:
        # Page 1 with nothing synced while the database has orders: the original bug.
        return "reset"
    if target > db_last:
        return "ahead"
    return "stale" if target < db_last else "healthy"


def cache_health(statuses: Iterable[PositionStatus]) -> float:
    """The share of stores whose Redis position is healthy (or a first sync), 0.0 to 1.0.

    A store without orders (``calculated``) has nothing to lose, so it counts as healthy;
    no stores at all is 1.0.
    """
    values = list(statuses)
    if not values:
        return 1.0
    return sum(1 for s in values if s in HEALTHY_STATUSES) / len(values)


@dataclass(frozen=True)
class StoreStatus:
    """One store across the layers: what each holds, the database's truth, the verdicts."""

    store: str
    name: str
    redis: SyncPosition | None
    json: SyncPosition | None
    db_last_order_id: int | None
    db_order_count: int
    status: PositionStatus
    json_status: PositionStatus


@dataclass(frozen=True)
class StatusReport:
    """Every store's status, the cache health and the state of Redis."""

    stores: tuple[StoreStatus, ...]
    cache_health: float
    redis_state: RedisState
    loss: LossReport
    backup_location: str
    backup_quarantined: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (timestamps as ISO strings)."""

        def position(p: SyncPosition | None) -> dict[str, Any] | None:
            if p is None:
                return None
            data = asdict(p)
            data["updated_at"] = format_timestamp(p.updated_at)
            return data

        return {
            "cache_health": self.cache_health,
            "redis_state": self.redis_state,
            "redis_missing": list(self.loss.missing),
            "redis_event_id": self.loss.event_id,
            "backup_location": self.backup_location,
            "backup_quarantined": self.backup_quarantined,
            "counts": dict(self.counts),
            "stores": [
                {
                    "store": s.store,
                    "name": s.name,
                    "status": s.status,
                    "json_status": s.json_status,
                    "db_last_order_id": s.db_last_order_id,
                    "db_order_count": s.db_order_count,
                    "redis": position(s.redis),
                    "json": position(s.json),
                }
                for s in self.stores
            ],
        }


def status_report(chain: PositionChain, *, cursor: str | None = None) -> StatusReport:
    """Read every layer once (one Redis round trip, one file read, one query) and judge."""
    stores = chain.stores
    snap = chain.redis.snapshot(s.identifier for s in stores)
    backup = chain.read_backup()
    summaries = chain.database.summaries()
    loss = detect_cache_loss(chain.redis, stores, cursor=cursor, summaries=summaries, snapshot=snap)
    rows: list[StoreStatus] = []
    for store in stores:
        sid = store.identifier
        summary = summaries.get(sid)
        cached = snap.positions.get(sid)
        rows.append(
            StoreStatus(
                store=sid,
                name=store.name,
                redis=cached,
                json=backup.get(sid),
                db_last_order_id=summary.last_order_id if summary else None,
                db_order_count=summary.order_count if summary else 0,
                status=classify(cached, summary),
                json_status=classify(backup.get(sid), summary),
            )
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    quarantined = chain.backup.last_quarantined
    return StatusReport(
        stores=tuple(rows),
        cache_health=cache_health(r.status for r in rows) if snap.available else 0.0,
        redis_state=loss.redis_state,
        loss=loss,
        backup_location=chain.backup.location,
        backup_quarantined=quarantined.moved_to if quarantined else None,
        counts=counts,
    )
