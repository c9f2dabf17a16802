"""The figures of ``ecosync bench webhooks``: one row per phase, measured on the table."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Engine

from ecosync_pipeline.lab.bench.report import machine
from ecosync_pipeline.lab.simulator import Simulator
from ecosync_pipeline.storage import duplicate_count
from ecosync_pipeline.storage.schema import orders, webhook_inbox
from ecosync_pipeline.tables import format_table

SCHEDULE_AVERAGE_WAIT = 450.0
"""A new order waits half the 15-minute schedule on average before the sync reads it."""


@dataclass(frozen=True)
class PhaseResult:
    """One phase: what the simulator did, what reached the table, and how fast."""

    name: str
    orders: int
    status_changes: int
    deletions: int
    events: int
    stored: int
    lost_orders: int
    duplicated: int
    failed_attempts: int
    exhausted: int
    latencies: Sequence[float] = field(repr=False)
    differ: int
    """Orders of the phase whose row differs from the simulator (state, deletion flag)."""
    to_inbox: Sequence[float] = field(default=(), repr=False)
    """Per order: its creation to its OrderCreated delivery stored (the push)."""
    inbox_to_row: Sequence[float] = field(default=(), repr=False)
    """Per order: its OrderCreated stored to applied (the applier)."""

    @property
    def lost_events(self) -> int:
        return max(0, self.events - self.stored)

    def quantile(self, q: float, values: Sequence[float] | None = None) -> float:
        chosen = self.latencies if values is None else values
        if not chosen:
            return float("nan")
        ordered = sorted(chosen)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("latencies", "to_inbox", "inbox_to_row")
        }
        data.update(
            to_inbox_p95=self.quantile(0.95, self.to_inbox),
            inbox_to_row_p95=self.quantile(0.95, self.inbox_to_row),
            lost_events=self.lost_events,
            p50=self.p50,
            p95=self.quantile(0.95),
            max=max(self.latencies, default=float("nan")),
        )
        return data


def _rows(engine: Engine, ids: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    c = orders.c
    found: dict[tuple[str, int], Any] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            stmt = select(c.store, c.order_id, c.first_seen_at, c.order_state, c.deleted_at).where(
                tuple_(c.store, c.order_id).in_(chunk)
            )
            for row in conn.execute(stmt):
                found[(row.store, int(row.order_id))] = row
    return found


def _inbox_times(
    engine: Engine, ids: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], tuple[datetime, datetime]]:
    """(received_at, applied_at) of each order's OrderCreated delivery."""
    c = webhook_inbox.c
    found: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            stmt = select(c.store, c.order_id, c.received_at, c.applied_at).where(
                c.event == "OrderCreated", tuple_(c.store, c.order_id).in_(ids[start : start + 500])
            )
            for store, order_id, received, applied in conn.execute(stmt):
                found[(store, int(order_id))] = (received, applied)
    return found


def _first_applied(engine: Engine, ids: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """When each order's row became visible: its first applied delivery (the apply commits
    right after marking it), later than the row's first_seen_at by the rest of the batch."""
    c = webhook_inbox.c
    found: dict[tuple[str, int], Any] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            stmt = (
                select(c.store, c.order_id, func.min(c.applied_at))
                .where(tuple_(c.store, c.order_id).in_(ids[start : start + 500]))
                .group_by(c.store, c.order_id)
            )
            for store, order_id, applied in conn.execute(stmt):
                if applied is not None:
                    found[(store, int(order_id))] = applied
    return found


def measure(
    name: str,
    simulator: Simulator,
    engine: Engine,
    ids: Sequence[tuple[str, int]],
    created_at: Mapping[tuple[str, int], float],
    *,
    events: int,
    stored: int,
    failed_attempts: int,
    exhausted: int,
    changes: Mapping[str, int],
) -> PhaseResult:
    """Compare the table with the simulator for the orders ``ids`` created in the phase."""
    rows = _rows(engine, ids)
    inbox = _inbox_times(engine, ids)
    visible = _first_applied(engine, ids)
    latencies = [
        visible.get(key, rows[key].first_seen_at).timestamp() - created_at[key]
        for key in ids
        if key in rows
    ]
    differ = 0
    for store, order_id in ids:
        row = rows.get((store, order_id))
        served = simulator.order(store, order_id)
        if row is None:
            continue
        if served is None:
            differ += row.deleted_at is None
        else:
            differ += row.deleted_at is not None or row.order_state != served["order_state_name"]
    stores = sorted({store for store, _ in ids})
    return PhaseResult(
        name=name,
        orders=len(ids),
        status_changes=changes.get("status", 0),
        deletions=changes.get("deleted", 0),
        events=events,
        stored=stored,
        lost_orders=len(ids) - len(rows),
        duplicated=sum(duplicate_count(engine, s) for s in stores),
        failed_attempts=failed_attempts,
        exhausted=exhausted,
        latencies=latencies,
        differ=differ,
        to_inbox=[inbox[k][0].timestamp() - created_at[k] for k in ids if k in inbox],
        inbox_to_row=[(a - r).total_seconds() for r, a in inbox.values() if a is not None],
    )


@dataclass(frozen=True)
class WebhooksReport:
    """Both phases of the benchmark."""

    phases: Sequence[PhaseResult]
    rate: float
    seconds: float
    backend: str
    retry_schedule: Sequence[float]
    load_average: float = 0.0
    unanswered_seconds: float = 0.0
    """From the SIGKILL to the restarted receiver's first answer (the restart included)."""
    """The machine's 1-minute load average when the benchmark ended (other work slows it)."""

    def table(self) -> str:
        header = (
            "phase",
            "orders",
            "status changes",
            "deletions",
            "events sent",
            "stored",
            "lost",
            "duplicated",
            "p50 s",
            "p95 s",
            "max s",
            "failed attempts",
            "table = simulator",
        )
        rows = [
            (
                p.name,
                p.orders,
                p.status_changes,
                p.deletions,
                p.events,
                p.stored,
                p.lost_events + p.lost_orders,
                p.duplicated,
                f"{p.p50:.3f}",
                f"{p.quantile(0.95):.3f}",
                f"{max(p.latencies, default=float('nan')):.3f}",
                p.failed_attempts,
                "yes" if p.differ == 0 and p.lost_orders == 0 else f"NO ({p.differ} differ)",
            )
            for p in self.phases
        ]
        schedule = ", ".join(f"{s:.2f}" for s in self.retry_schedule)
        split = "; ".join(
            f"{p.name}: creation to stored in the inbox p95 {p.quantile(0.95, p.to_inbox):.3f} s, "
            f"stored to applied p95 {p.quantile(0.95, p.inbox_to_row):.3f} s"
            for p in self.phases
        )
        notes = [
            split + ".",
            f"{self.rate:g} orders/s across 5 stores for {self.seconds:g} s per phase, orders "
            f"database {self.backend}; latency = the order's creation in the simulator to its "
            "row committed in the orders table (its first delivery marked applied).",
            f"EcoManager's retry schedule, time-scaled: {schedule} s after each failed attempt; "
            f"the killed receiver answered again {self.unanswered_seconds:.1f} s after the kill "
            "(its restart included).",
            f"With the 15-minute schedule instead, a new order waits {SCHEDULE_AVERAGE_WAIT:.0f} "
            "s on average (900 s at most).",
            "machine: {cpus} cores, Python {python}, {platform}".format(**machine())
            + f"; load average {self.load_average:.1f} at the end",
        ]
        return format_table(header, rows) + "\n\n" + "\n".join(notes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "backend": self.backend,
            "retry_schedule": list(self.retry_schedule),
            "load_average": self.load_average,
            "unanswered_seconds": self.unanswered_seconds,
            "phases": [p.as_dict() for p in self.phases],
        }
