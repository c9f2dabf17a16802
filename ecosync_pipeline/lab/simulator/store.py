"""One simulated store: the initial ids plus the changes made while it runs.

Changes stay small next to the store: deleted initial ids are a sorted list (adjusted
with bisect), new orders a sorted list of ids after the initial last id, and status
changes a dict. Every read (a page, the page of an id, the full id list) combines them
with the IdSpace without materialising the store. Not thread-safe on its own: the
Simulator serialises access.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ecosync_pipeline.lab.simulator.flow import is_open, next_open_state
from ecosync_pipeline.lab.simulator.idspace import IdSpace
from ecosync_pipeline.lab.simulator.orders import (
    NEXT_STATE,
    OPEN_AGE_DAYS,
    ORDER_STATES,
    OrderFactory,
    confirmation_for,
    timestamp,
    wholesale,
)
from ecosync_pipeline.lab.simulator.spec import SimulatorError, StoreSpec

ChangeKind = Literal["created", "deleted", "status"]


@dataclass(frozen=True)
class Change:
    """One change of a simulated store, as its observers see it.

    ``order`` is the order as served after the change; for a deletion, as it was served
    just before. ``at`` is the wall-clock time of the change (time.time()).
    """

    store: str
    kind: ChangeKind
    order_id: int
    order: dict[str, Any]
    at: float


Observer = Callable[[Change], None]
"""Called for every change, under the simulator's lock: it must return quickly."""


class SimStore:
    """The live state of one simulated store."""

    def __init__(
        self, spec: StoreSpec, simulator_seed: int, observers: list[Observer] | None = None
    ) -> None:
        self.spec = spec
        # Shared with the Simulator, so observers outlive a reconfiguration.
        self.observers: list[Observer] = observers if observers is not None else []
        self.identifier = spec.identifier
        key = spec.key(simulator_seed)
        self.base = IdSpace(
            key,
            spec.first_id,
            count=spec.order_count,
            last_id=spec.last_id,
            gap_rate=spec.gap_rate,
            stride=spec.stride,
        )
        self.factory = OrderFactory(
            identifier=spec.identifier,
            key=key,
            first_id=spec.first_id,
            last_id=max(self.base.last_id, spec.first_id),
            catalog=spec.catalog,
            started=spec.started,
            until=spec.until,
        )
        self.deleted: list[int] = []  # initial ids deleted since, sorted
        self.added: list[int] = []  # ids created since, sorted (all above base.last_id)
        self.next_id = self.base.last_id + 1 if self.base.size else spec.first_id
        self.overrides: dict[int, tuple[str, str, str]] = {}  # id -> (state, confirmation, at)
        # Runtime choices (which ids to delete, new ids' steps) are seeded too, so a
        # scripted scenario replays identically.
        self.rng = random.Random(key ^ 0xC0FFEE)
        # The ids of open orders (not yet in a final state), sorted; found on first use.
        self._open: list[int] | None = None
        self.created = 0  # orders appended by add(), the spec's ``added`` included
        # The switch large_order_rate (share of new orders, item lines), set by the
        # Simulator; the wholesale orders made so far: id -> item lines.
        self.large_orders: tuple[float, int] = (0.0, 0)
        self.large: dict[int, int] = {}
        self.add(spec.added)

    # --- reading -----------------------------------------------------------------

    @property
    def base_visible(self) -> int:
        return self.base.size - len(self.deleted)

    def __len__(self) -> int:
        return self.base_visible + len(self.added)

    @property
    def first_id(self) -> int | None:
        """The lowest id currently served, or None for an empty store."""
        return next(self.iter_from(0), None)

    @property
    def last_id(self) -> int | None:
        """The highest id currently served, or None for an empty store."""
        if self.added:
            return self.added[-1]
        if self.base_visible == 0:
            return None
        return self.id_at(self.base_visible - 1)

    def _base_index(self, index: int) -> int:
        """The IdSpace position of the ``index``-th initial order still present."""
        # Fixed point: skip as many positions as there are deletions up to the id found.
        skipped = 0
        while True:
            order_id = self.base.id_at(index + skipped)
            behind = bisect_right(self.deleted, order_id)
            if behind == skipped:
                return index + skipped
            skipped = behind

    def iter_from(self, index: int) -> Iterator[int]:
        """The ids served from position ``index`` (0-based) onwards, ascending."""
        index = max(0, index)
        if index < self.base_visible:
            deleted = self.deleted
            start = self._base_index(index)
            for order_id in self.base.iter_from(start):
                pos = bisect_left(deleted, order_id)
                if pos < len(deleted) and deleted[pos] == order_id:
                    continue
                yield order_id
            index = self.base_visible
        yield from self.added[index - self.base_visible :]

    def id_at(self, index: int) -> int:
        """The id served at position ``index`` (0-based)."""
        if not 0 <= index < len(self):
            raise IndexError(f"store {self.identifier}: position {index} is past the end")
        return next(self.iter_from(index))

    def page_ids(self, page: int, per_page: int) -> list[int]:
        """The ids on ``page`` (1-based), [] past the end."""
        start = (page - 1) * per_page
        if page < 1 or start >= len(self):
            return []
        out: list[int] = []
        for order_id in self.iter_from(start):
            out.append(order_id)
            if len(out) == per_page:
                break
        return out

    def rank(self, order_id: int) -> tuple[int, bool]:
        """(number of served ids below ``order_id``, whether ``order_id`` is served)."""
        base_rank, in_base = self.base.locate(order_id)
        pos = bisect_left(self.deleted, order_id)
        was_deleted = pos < len(self.deleted) and self.deleted[pos] == order_id
        added_pos = bisect_left(self.added, order_id)
        in_added = added_pos < len(self.added) and self.added[added_pos] == order_id
        return base_rank - pos + added_pos, (in_base and not was_deleted) or in_added

    def contains(self, order_id: int) -> bool:
        """Whether ``order_id`` is currently served."""
        return self.rank(order_id)[1]

    def page_of(self, order_id: int, per_page: int) -> int | None:
        """The page (1-based) that holds ``order_id`` now, or None if it is not served."""
        rank, present = self.rank(order_id)
        return rank // per_page + 1 if present else None

    def snapshot(self) -> Iterator[int]:
        """Every served id, ascending, as of now (later changes do not affect it)."""
        base, deleted, added = self.base, tuple(self.deleted), tuple(self.added)

        def generate() -> Iterator[int]:
            skip = iter(deleted)
            next_deleted = next(skip, None)
            for order_id in base:
                if order_id == next_deleted:
                    next_deleted = next(skip, None)
                    continue
                yield order_id
            yield from added

        return generate()

    def order(self, order_id: int) -> dict[str, Any]:
        """The served order with this id (its generated content plus status changes)."""
        body = self.factory.build(order_id)
        lines = self.large.get(order_id)
        if lines:
            body = wholesale(body, lines)
        override = self.overrides.get(order_id)
        if override is not None:
            state, confirmation, at = override
            body["order_state_name"] = state
            body["confirmation_state_name"] = confirmation
            body["updated_at"] = max(at, body["updated_at"])
        return body

    # --- changing ----------------------------------------------------------------

    def _notify(self, kind: ChangeKind, order_id: int, order: dict[str, Any] | None = None) -> None:
        if not self.observers:
            return
        change = Change(
            self.identifier,
            kind,
            order_id,
            order if order is not None else self.order(order_id),
            time.time(),
        )
        for observer in list(self.observers):
            observer(change)

    def add(self, count: int) -> list[int]:
        """Append ``count`` new orders after the last id; return their ids."""
        new: list[int] = []
        span = self.base.step_span
        self.created += count
        share, lines = self.large_orders
        for _ in range(count):
            new.append(self.next_id)
            self.added.append(self.next_id)
            if share and self.rng.random() < share:
                self.large[self.next_id] = lines
            self.next_id += 1 + self.rng.randrange(span)
            self._track(new[-1])
            self._notify("created", new[-1])
        return new

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Delete the given ids; return those that were served (the others are ignored)."""
        done: list[int] = []
        for order_id in sorted(set(ids)):
            before = self.order(order_id) if self.observers and self.contains(order_id) else None
            if order_id > self.base.last_id:
                pos = bisect_left(self.added, order_id)
                if pos < len(self.added) and self.added[pos] == order_id:
                    del self.added[pos]
                    done.append(order_id)
            elif self.base.locate(order_id)[1]:
                pos = bisect_left(self.deleted, order_id)
                if pos == len(self.deleted) or self.deleted[pos] != order_id:
                    insort(self.deleted, order_id)
                    done.append(order_id)
            self.overrides.pop(order_id, None)
            self._untrack(order_id)
            if before is not None and done and done[-1] == order_id:
                self._notify("deleted", order_id, before)
        return done

    def delete_random(
        self, n: int, min_id: int | None = None, max_id: int | None = None
    ) -> list[int]:
        """Delete ``n`` random served ids (within [min_id, max_id] when given)."""
        low = self.rank(min_id)[0] if min_id is not None else 0
        high = len(self)
        if max_id is not None:
            rank, present = self.rank(max_id)
            high = rank + 1 if present else rank
        if high <= low:
            return []
        positions = sorted(self.rng.sample(range(low, high), min(n, high - low)), reverse=True)
        # Highest position first, so each deletion leaves the lower positions in place.
        victims = [self.id_at(p) for p in positions]
        return self.delete(victims)

    def set_status(self, order_id: int, state: str, confirmation: str | None = None) -> None:
        """Change an order's state; its updated_at moves to now (never backwards)."""
        if state not in ORDER_STATES:
            raise SimulatorError(
                f"store {self.identifier}: unknown order state {state!r}; "
                f"use one of {', '.join(ORDER_STATES)}"
            )
        if not self.contains(order_id):
            raise SimulatorError(
                f"store {self.identifier}: order {order_id} is not served; "
                "pick an id from ids() or page_ids()"
            )
        current = self.order(order_id)["updated_at"]
        now = timestamp(datetime.now(timezone.utc))
        if now <= current:
            bumped = datetime.fromisoformat(current.replace("Z", "+00:00"))
            now = timestamp(bumped + timedelta(seconds=1))
        self.overrides[order_id] = (state, confirmation or confirmation_for(state), now)
        self._untrack(order_id)
        self._track(order_id)
        self._notify("status", order_id)

    def change_random_statuses(self, n: int) -> list[int]:
        """Move ``n`` random orders to their next state; return their ids."""
        size = len(self)
        if size == 0:
            return []
        changed = []
        for p in sorted(self.rng.sample(range(size), min(n, size))):
            order_id = self.id_at(p)
            self.set_status(order_id, NEXT_STATE[self.order(order_id)["order_state_name"]])
            changed.append(order_id)
        return changed

    # --- reading newest first and by keyset --------------------------------------

    def positions(self, start: int, stop: int) -> list[int]:
        """The ids at positions [start, stop) (clamped to the store), ascending."""
        start, stop = max(0, start), min(len(self), stop)
        if stop <= start:
            return []
        out: list[int] = []
        for order_id in self.iter_from(start):
            out.append(order_id)
            if len(out) == stop - start:
                break
        return out

    def first_index_created_from(self, moment: datetime) -> int:
        """The position of the first order created at or after ``moment`` (len when none).

        created_at increases strictly with the id, so the orders created since a moment
        are a suffix of the store: a bisection over positions finds where it starts.
        """
        wanted = timestamp(moment)
        low, high = 0, len(self)
        while low < high:
            mid = (low + high) // 2
            if self.order(self.id_at(mid))["created_at"] < wanted:
                low = mid + 1
            else:
                high = mid
        return low

    # --- open orders and their flow ------------------------------------------------

    def open_ids(self) -> list[int]:
        """The ids of the orders not yet in a final state, ascending."""
        if self._open is None:
            # Generated orders older than OPEN_AGE_DAYS are all final: scan the rest
            # (a day early, to be safe), plus any order a status change reopened.
            since = self.spec.until - timedelta(days=OPEN_AGE_DAYS + 1)
            start = self.first_index_created_from(since)
            found = {i for i in self.positions(start, len(self)) if self._is_open(i)}
            found.update(i for i in self.overrides if self.contains(i) and self._is_open(i))
            self._open = sorted(found)
        return list(self._open)

    def _is_open(self, order_id: int) -> bool:
        return is_open(self.order(order_id)["order_state_name"])

    def _track(self, order_id: int) -> None:
        if self._open is not None and self._is_open(order_id):
            insort(self._open, order_id)

    def _untrack(self, order_id: int) -> None:
        if self._open is not None:
            pos = bisect_left(self._open, order_id)
            if pos < len(self._open) and self._open[pos] == order_id:
                del self._open[pos]

    def advance_statuses(self, n: int) -> list[int]:
        """Move ``n`` random open orders one state along the flow; return their ids.

        An order may move more than once; it stops when every order is final.
        """
        moved: list[int] = []
        self.open_ids()  # finds them on first use; kept up to date from then on
        for _ in range(n):
            if not self._open:
                break
            order_id = self._open[self.rng.randrange(len(self._open))]
            state = self.order(order_id)["order_state_name"]
            self.set_status(order_id, next_open_state(state, self.rng))
            moved.append(order_id)
        return moved

    def swap(self, n: int) -> tuple[list[int], list[int]]:
        """Delete ``n`` random orders and add ``n`` new ones at the same instant.

        The total stays the same, so a reader watching ``meta.total`` sees nothing.
        """
        deleted = self.delete_random(n)
        return deleted, self.add(len(deleted))
