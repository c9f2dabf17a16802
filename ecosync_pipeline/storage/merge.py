"""The merge rule: one writer, and one version rule, for every way into the orders table.

The poll's pages, the cursor read, the reconciliation, the status refresh, the webhooks
and a single-order read all write through ``merge_orders`` (DESIGN, invariant 15). Each
write is a state EcoManager served (``Served``) or a deletion (``Gone``), with the time
its data was fetched, and ``decide`` holds the whole rule:

- an older state never replaces a newer one (EcoManager's ``updated_at``; without one on
  either side, the later fetch wins);
- a deletion is as new as the state it carries or its own time (a delivery's), and at
  the same instant the deletion wins; an absence (the order no longer served) flags a
  row that was not seen live after the read that found it gone;
- a deleted order comes back only with a strictly newer state fetched after its
  deletion was recorded: a page fetched before the deletion never revives it, and a tie
  never does;
- the same ``updated_at`` with different content (EcoManager's timestamps have seconds)
  is a tie, whatever the arrival order: nothing is written, the tie is reported, and the
  caller asks EcoManager for that order once (pages.settle_ties). That answer, a
  ``Served`` marked ``settled``, wins the tie.

The counts say what was really written: a re-read that changed nothing is ``unchanged``,
a state older than the table ``stale``, a revived order ``reappeared``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from sqlalchemy import JSON
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage.orders import (
    COMPARED_COLUMNS,
    _storage_error,
    insert_new,
    order_row,
    stored_rows,
    update_rows,
)
from ecosync_pipeline.storage.schema import Money
from ecosync_pipeline.storage.schema import orders as orders_table

logger = logging.getLogger(__name__)

Outcome = Literal["new", "updated", "unchanged", "reappeared", "flagged", "stale", "tie"]
Row = dict[str, Any]
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Served:
    """A state of an order as EcoManager served it (a page, a delivery, a single read).

    ``fetched_at``: when it was asked for (default: the order's own ``fetched_at``, else
    the time of the write). ``settled``: EcoManager's answer to a single-order read made
    to settle a tie, which wins it.
    """

    order: Order
    fetched_at: datetime | None = None
    settled: bool = False

    @property
    def order_id(self) -> int:
        return self.order.id


@dataclass(frozen=True)
class Gone:
    """An order deleted upstream, as ecosync learned it at ``fetched_at``.

    ``version``: EcoManager's time of the deletion (an OrderDeleted delivery), None for
    an absence (a read that no longer finds the order). ``order``: the state a delivery
    carries, stored flagged when the table does not have the order.
    """

    order_id: int
    fetched_at: datetime
    version: datetime | None = None
    order: Order | None = None


Write = Served | Gone


@dataclass(frozen=True)
class UpsertCounts:
    """What a merge wrote: each write's outcome counted, and the ties left to settle."""

    new: int = 0
    updated: int = 0
    """Stored live orders whose content changed."""
    unchanged: int = 0
    """Re-read as stored (only when it was last seen moved)."""
    reappeared: int = 0
    """Flagged deleted, live again (a newer state fetched after the deletion)."""
    flagged: int = 0
    stale: int = 0
    """Older than the table (or fetched before its deletion): nothing written."""
    ties: tuple[int, ...] = ()
    """Order ids whose write met the same ``updated_at`` with other content, unsettled."""
    settled: int = 0
    """Ties settled by asking EcoManager for the order."""

    @property
    def written(self) -> int:
        """Orders whose row changed (inserted, updated, revived or flagged)."""
        return self.new + self.updated + self.reappeared + self.flagged

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        values: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = tuple(sorted({*mine, *theirs})) if f.name == "ties" else mine + theirs
        return UpsertCounts(**values)


@dataclass(frozen=True)
class MergeResult:
    """The counts of a merge, and each write's outcome in the order given."""

    counts: UpsertCounts
    outcomes: tuple[Outcome, ...]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def compare_versions(
    served: datetime | None, stored: datetime | None
) -> Literal["newer", "older", "same", "unversioned"]:
    """How EcoManager's ``updated_at`` of a served state compares with the stored one.

    A versioned state is newer than an unversioned one, never replaced by it.
    """
    if served is None and stored is None:
        return "unversioned"
    if stored is None:
        return "newer"
    if served is None:
        return "older"
    a, b = _utc(served), _utc(stored)
    return "newer" if a > b else "older" if a < b else "same"


def _comparable(name: str, value: Any) -> Any:
    """A column value as the table holds it, so a served state and a stored row compare."""
    if value is None:
        return None
    column_type = orders_table.c[name].type
    if isinstance(column_type, Money):
        return Decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP)
    if isinstance(column_type, JSON):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, datetime):
        return _utc(value).astimezone(timezone.utc)
    return value


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two rows hold the same EcoManager fields."""
    return all(_comparable(c, a[c]) == _comparable(c, b[c]) for c in COMPARED_COLUMNS)


def decide(
    store: StoreId, row: Row | None, write: Write, now: datetime
) -> tuple[Outcome, Row | None]:
    """The merge rule for one write onto the stored ``row`` (None: not stored).

    Returns the outcome and the row to store (None: nothing to write).
    """
    if isinstance(write, Gone):
        return _gone(store, row, write)
    seen = write.fetched_at or write.order.fetched_at or now
    served = order_row(store, write.order, seen)
    if row is None:
        return "new", served
    merged = {
        **served,
        "first_seen_at": row["first_seen_at"],
        "last_seen_at": max(_utc(row["last_seen_at"]), _utc(seen)),
    }
    order = compare_versions(served["updated_at"], row["updated_at"])
    if row["deleted_at"] is not None:
        recorded = row["deletion_recorded_at"] or row["deleted_at"]
        if _utc(seen) <= _utc(recorded) or order == "older":
            return "stale", None  # fetched before the deletion was recorded, or older
        if order == "newer" or write.settled:
            return "reappeared", merged
        return "tie", None
    if order == "unversioned":
        order = "newer" if _utc(seen) >= _utc(row["last_seen_at"]) else "older"
    if order == "older":
        return "stale", None
    if same_content(served, row):
        return "unchanged", {**row, "last_seen_at": merged["last_seen_at"]}
    if order == "newer" or write.settled:
        return "updated", merged
    return "tie", None


def _gone(store: StoreId, row: Row | None, write: Gone) -> tuple[Outcome, Row | None]:
    if row is None:
        if write.order is None:
            return "unchanged", None  # not stored: nothing to flag
        return "flagged", _flagged(order_row(store, write.order, write.fetched_at), write)
    if row["deleted_at"] is not None:
        return "unchanged", None
    if write.version is None:
        # An absence: a row seen live after the read that found it gone stays live.
        if _utc(row["last_seen_at"]) > _utc(write.fetched_at):
            return "stale", None
        return "flagged", _flagged(row, write)
    if compare_versions(write.version, row["updated_at"]) == "older":
        return "stale", None  # a newer state (a re-creation) came after this deletion
    carried = write.order
    if carried is not None and compare_versions(carried.updated_at, row["updated_at"]) != "older":
        row = {
            **order_row(store, carried, write.fetched_at),
            "first_seen_at": row["first_seen_at"],
            "last_seen_at": max(_utc(row["last_seen_at"]), _utc(write.fetched_at)),
        }
    return "flagged", _flagged(row, write)


def _flagged(row: Row, write: Gone) -> Row:
    """``row`` flagged deleted by ``write``; its version becomes the deletion's when later."""
    stamps = [_utc(t) for t in (row["updated_at"], write.version) if t is not None]
    return {
        **row,
        "updated_at": max(stamps) if stamps else None,
        "deleted_at": write.version or write.fetched_at,
        "deletion_recorded_at": write.fetched_at,
    }


def merge_orders(
    conn: Connection, store: StoreId, writes: Sequence[Write], *, now: datetime | None = None
) -> MergeResult:
    """Apply ``writes`` in order under the merge rule, in the caller's transaction.

    Several writes of one order are decided one after the other, each against the
    result of the ones before. The store must exist (ensure_store).
    """
    if not writes:
        return MergeResult(UpsertCounts(), ())
    at = now or datetime.now(timezone.utc)
    ids = sorted({w.order_id for w in writes})
    try:
        outcomes = _merge(conn, store, writes, at)
    except SQLAlchemyError as exc:
        raise _storage_error(
            exc,
            f"store {store}: writing {len(ids)} orders (ids {ids[0]}..{ids[-1]}) failed",
            hint="the transaction is not committed, so the sync position must not advance; "
            "check the database and run the sync again",
        ) from exc
    # A value a column's own conversion refuses (the order model sets such fields aside
    # before they get here, so this is a defect, reported as ours rather than raw).
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise StorageError(
            f"store {store}: writing {len(ids)} orders (ids {ids[0]}..{ids[-1]}) failed: a "
            f"value could not be converted for its column ({type(exc).__name__}); nothing "
            "was committed and the position did not move"
        ) from exc
    counts = _count(writes, outcomes)
    logger.debug("store %s: merged %d writes: %s", store, len(writes), counts)
    return MergeResult(counts, tuple(outcomes))


def _merge(
    conn: Connection, store: StoreId, writes: Sequence[Write], now: datetime
) -> list[Outcome]:
    """Insert what is new first (the poll's usual page: one statement), then decide every
    other write against the stored row, read and locked, and update what changed."""
    first: dict[int, int] = {}
    for n, write in enumerate(writes):
        first.setdefault(write.order_id, n)
    fresh = {oid: decide(store, None, writes[n], now) for oid, n in sorted(first.items())}
    # In id order, as every writer locks rows: two inserting the same new ids never deadlock.
    inserted = insert_new(conn, store, [row for _, row in fresh.values() if row is not None])
    stored = stored_rows(conn, store, [oid for oid in first if oid not in inserted])
    state: dict[int, Row | None] = {
        oid: fresh[oid][1] if oid in inserted else stored.get(oid) for oid in first
    }
    outcomes: list[Outcome] = []
    changed: dict[int, Row] = {}
    for n, write in enumerate(writes):
        oid = write.order_id
        if oid in inserted and first[oid] == n:
            outcomes.append(fresh[oid][0])  # written by the insert
            continue
        outcome, row = decide(store, state[oid], write, now)
        outcomes.append(outcome)
        if row is not None:
            state[oid] = changed[oid] = row
    update_rows(conn, store, [row for _, row in sorted(changed.items())])
    return outcomes


def _count(writes: Sequence[Write], outcomes: Sequence[Outcome]) -> UpsertCounts:
    tally: dict[str, int] = {}
    tied: set[int] = set()
    for write, outcome in zip(writes, outcomes, strict=True):
        if outcome == "tie":
            tied.add(write.order_id)
            continue
        tally[outcome] = tally.get(outcome, 0) + 1
        if outcome in ("new", "updated", "reappeared", "flagged"):
            tied.discard(write.order_id)  # a later write of the order decided it
    return UpsertCounts(
        new=tally.get("new", 0),
        updated=tally.get("updated", 0),
        unchanged=tally.get("unchanged", 0),
        reappeared=tally.get("reappeared", 0),
        flagged=tally.get("flagged", 0),
        stale=tally.get("stale", 0),
        ties=tuple(sorted(tied)),
    )


def upsert_orders(
    conn: Connection, store: StoreId, orders: Sequence[Order], *, seen_at: datetime | None = None
) -> UpsertCounts:
    """Merge served orders (a page, a batch of pages) in the caller's transaction.

    ``seen_at``: when they were fetched (default: each order's ``fetched_at``, else now).
    """
    return merge_orders(conn, store, [Served(o, seen_at) for o in orders]).counts
