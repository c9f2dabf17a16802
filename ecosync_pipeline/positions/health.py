"""Position health: what every layer holds for each store, judged against the database.

``status_report`` reads the layers once (chain.snapshot: one Redis round trip, one file
read, one query), judges each position with chain.classify, and names the loss, if any,
with positions.loss, so the CLI, the assets, the checks and the sensor agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ecosync_pipeline.positions.chain import USABLE, classify
from ecosync_pipeline.positions.codec import format_timestamp
from ecosync_pipeline.positions.factory import Chain
from ecosync_pipeline.positions.loss import LossReport, RedisState, detect
from ecosync_pipeline.positions.model import PositionStatus, SyncPosition


def cache_health(statuses: Iterable[PositionStatus]) -> float:
    """The share of stores whose Redis position is healthy (or a first sync), 0.0 to 1.0.

    A store without orders (``calculated``) has nothing to lose, so it counts as healthy;
    no stores at all is 1.0.
    """
    values = list(statuses)
    if not values:
        return 1.0
    return sum(1 for s in values if s in USABLE) / len(values)


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


def status_report(chain: Chain, *, cursor: str | None = None) -> StatusReport:
    """Read every layer once and judge each store's positions against the database."""
    snap = chain.snapshot()
    truth = snap.database
    if truth.failure is not None:
        raise truth.failure
    loss = detect(
        snap.redis,
        [s.identifier for s in chain.stores],
        cursor=cursor,
        summaries=truth.summaries,
        backup_generation=lambda: snap.json.generation,
    )
    rows: list[StoreStatus] = []
    for store in chain.stores:
        sid = store.identifier
        summary = truth.summary(sid)
        cached = snap.redis.get(sid)
        # Redis down says nothing of the store's position: not "missing", "unreachable".
        status = classify(cached, truth.get(sid)) if snap.redis.ok else "unreachable"
        rows.append(
            StoreStatus(
                store=sid,
                name=store.name,
                redis=cached,
                json=snap.json.get(sid),
                db_last_order_id=summary.last_order_id if summary else None,
                db_order_count=summary.order_count if summary else 0,
                status=status,
                json_status=(
                    classify(snap.json.get(sid), truth.get(sid)) if snap.json.ok else "unreachable"
                ),
            )
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    quarantined = snap.json.quarantined
    return StatusReport(
        stores=tuple(rows),
        cache_health=cache_health(r.status for r in rows) if snap.redis.available else 0.0,
        redis_state=loss.redis_state,
        loss=loss,
        backup_location=chain.backup.location,
        backup_quarantined=quarantined.moved_to if quarantined else None,
        counts=counts,
    )
