"""The soak's verdict: the orders table against the simulator, and the deliveries against both.

The table is compared id by id with what the simulator serves once everything has
stopped: an id served and not stored is missing; a stored id that is served but flagged
deleted is flagged wrongly; a stored id no longer served and not flagged is a deletion
not flagged; a served id whose row differs in any field the mirror compares (state,
confirmation, updated_at, ...) is a state differing; an id stored twice is duplicated.

Deliveries are judged on the simulator's own log of what the receiver answered: every
delivery answered 2xx must be in the inbox, applied, and its order's row at least as
new as what it carried (flagged, for a deletion). Each discrepancy keeps its evidence:
the store, the id, what the table held and what the simulator serves or sent.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import StoreId, validate_store_identifier
from ecosync_pipeline.ecomanager import values
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.lab.simulator import Simulator
from ecosync_pipeline.storage import duplicate_count
from ecosync_pipeline.storage.ranges import StoredOrder, stored_in_range
from ecosync_pipeline.storage.schema import webhook_inbox

ALL_IDS = (0, 2**63 - 1)
EXAMPLES = 25
"""Discrepancies kept per kind and store as evidence (the counts are exact)."""


@dataclass
class Counts:
    """The soak's six figures; each must be 0."""

    missing: int = 0
    duplicated: int = 0
    states_differing: int = 0
    deletions_not_flagged: int = 0
    flagged_wrongly: int = 0
    acknowledged_not_applied: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Discrepancy:
    """One id that is wrong, with what each side holds."""

    store: str
    order_id: int
    kind: str
    table: str
    simulator: str


@dataclass
class Evidence:
    """Discrepancies, at most EXAMPLES per (store, kind)."""

    items: list[Discrepancy] = field(default_factory=list)
    _kept: Counter[tuple[str, str]] = field(default_factory=Counter)

    def note(self, item: Discrepancy) -> None:
        key = (item.store, item.kind)
        if self._kept[key] < EXAMPLES:
            self._kept[key] += 1
            self.items.append(item)


def _row_text(row: StoredOrder | None) -> str:
    if row is None:
        return "no row"
    f = row.fields
    at = f.get("updated_at")
    when = at.isoformat() if isinstance(at, datetime) else str(at)
    flag = ", flagged deleted" if row.deleted else ""
    return f"{f.get('order_state')}/{f.get('confirmation_state')} updated {when}{flag}"


def _order_text(order: Mapping[str, Any] | None) -> str:
    if order is None:
        return "not served (deleted)"
    return (
        f"{order.get('order_state_name')}/{order.get('confirmation_state_name')} "
        f"updated {order.get('updated_at')}"
    )


def table_rows(engine: Engine, store: StoreId) -> dict[int, StoredOrder]:
    """Every row of the store, flagged ones included."""
    return stored_in_range(engine, store, *ALL_IDS)


def audit_store(
    engine: Engine, simulator: Simulator, store: StoreId, evidence: Evidence
) -> tuple[Counts, int]:
    """The store's table against what the simulator serves now; (counts, orders served)."""
    rows = table_rows(engine, store)
    served = set(simulator.ids(store))
    counts = Counts(duplicated=duplicate_count(engine, store))
    for order_id in sorted(served | set(rows)):
        row = rows.get(order_id)
        order = simulator.order(store, order_id) if order_id in served else None
        kind = _judge(store, row, order)
        if kind is None:
            continue
        setattr(counts, kind, getattr(counts, kind) + 1)
        evidence.note(Discrepancy(store, order_id, kind, _row_text(row), _order_text(order)))
    return counts, len(served)


def _judge(store: str, row: StoredOrder | None, order: Mapping[str, Any] | None) -> str | None:
    """Which count an id falls in (None: the table is right about it)."""
    if order is None:
        return "deletions_not_flagged" if row is not None and not row.deleted else None
    if row is None:
        return "missing"
    if row.deleted:
        return "flagged_wrongly"
    served = Order.from_payload(dict(order), store=store, page=0, index=0)
    return "states_differing" if row.differs_from(served, store) else None


@dataclass(frozen=True)
class Acknowledged:
    """A delivery the receiver answered 2xx, by its inbox key, and what it carried."""

    store: StoreId
    order_id: int
    event: str
    webhook_id: str
    sha256: str
    version: datetime | None
    body_state: str


def acknowledged(simulator: Simulator) -> list[Acknowledged]:
    """Every distinct delivery the simulator saw answered 2xx (its log of attempts)."""
    seen: dict[tuple[str, int, str, str, str], Acknowledged] = {}
    for attempt in list(simulator.webhooks.dispatcher.attempts):
        if attempt.status is None or not 200 <= attempt.status < 300:
            continue
        d = attempt.delivery
        key = (d.store, d.order_id, d.event, str(d.webhook_id), hashlib.sha256(d.body).hexdigest())
        if key not in seen:
            order = json.loads(d.body)["data"]
            stamp = order.get("deleted_at") or order.get("updated_at")
            version = values.timestamp(stamp) if stamp else None
            store = validate_store_identifier(d.store)
            seen[key] = Acknowledged(store, *key[1:], version, _order_text(order))
    return list(seen.values())


@dataclass
class DeliveryFigures:
    """How the deliveries went: the simulator's counts, the answers, the inbox outcomes."""

    sent: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    inbox: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    webhooks_disabled: int = 0


def _answer(status: int | None) -> str:
    if status is None:
        return "no answer"
    return "2xx" if 200 <= status < 300 else str(status)


def delivery_figures(engine: Engine, simulator: Simulator) -> DeliveryFigures:
    hub = simulator.webhooks
    answers = Counter(_answer(a.status) for a in list(hub.dispatcher.attempts))
    with engine.connect() as conn:
        outcomes = Counter(
            str(o) if o is not None else "pending"
            for o in conn.execute(select(webhook_inbox.c.outcome)).scalars()
        )
    return DeliveryFigures(
        sent=dict(hub.dispatcher.counts),
        answers=dict(answers),
        inbox=dict(outcomes),
        webhooks_disabled=len(hub.notices),
    )


def audit_deliveries(
    engine: Engine,
    simulator: Simulator,
    stores: Iterable[StoreId],
    evidence: Evidence,
    undone: Mapping[tuple[str, int, str, str, str], str] | None = None,
) -> tuple[dict[str, int], DeliveryFigures]:
    """Per store, the deliveries answered 2xx whose effect the table does not show now,
    or did not keep (``undone``: what the watcher saw, soak_watch.py)."""
    c = webhook_inbox.c
    with engine.connect() as conn:
        inbox = {
            (r.store, int(r.order_id), r.event, r.webhook_id, r.body_sha256): (
                r.applied_at,
                r.outcome,
            )
            for r in conn.execute(
                select(
                    c.store,
                    c.order_id,
                    c.event,
                    c.webhook_id,
                    c.body_sha256,
                    c.applied_at,
                    c.outcome,
                )
            )
        }
    rows = {store: table_rows(engine, store) for store in stores}
    wrong: Counter[str] = Counter()
    acks = acknowledged(simulator)
    for ack in acks:
        key = (ack.store, ack.order_id, ack.event, ack.webhook_id, ack.sha256)
        row = rows.get(ack.store, {}).get(ack.order_id)
        problem = _unapplied(inbox.get(key), ack, row) or (undone or {}).get(key)
        if problem is not None:
            wrong[ack.store] += 1
            evidence.note(
                Discrepancy(
                    ack.store,
                    ack.order_id,
                    "acknowledged_not_applied",
                    f"{problem}; row: {_row_text(row)}",
                    f"{ack.event} answered 2xx, carrying {ack.body_state}",
                )
            )
    figures = delivery_figures(engine, simulator)
    figures.acknowledged = len(acks)
    return dict(wrong), figures


def _unapplied(
    stored: tuple[datetime | None, str | None] | None, ack: Acknowledged, row: StoredOrder | None
) -> str | None:
    """Why an acknowledged delivery is not in the table (None: it is)."""
    if stored is None:
        return "not in the inbox"
    applied_at, outcome = stored
    if applied_at is None:
        return "in the inbox, never applied"
    if outcome == "refused":
        return None  # kept with its reason and left to the poll, as the contract allows
    if row is None:
        return f"inbox outcome {outcome}, no row"
    if ack.event == "OrderDeleted":
        return None if row.deleted else f"inbox outcome {outcome}, row not flagged"
    stored_at = row.fields.get("updated_at")
    if row.deleted or ack.version is None:
        return None
    if isinstance(stored_at, datetime) and stored_at.astimezone(timezone.utc) >= ack.version:
        return None
    return f"inbox outcome {outcome}, row older than the delivery"
