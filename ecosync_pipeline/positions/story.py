"""One story per cache loss: when it was seen, which stores, the layer each was restored
from, the restore that did it and how long it took, told in one line.

A loss is seen (by the sensor, or by the restore that mends it) and later restored; the
story of the last one is shown beside the positions until the next loss, so an operator
who looks an hour later still reads what happened:

    last loss 02:15:03 UTC, 5 stores, restored from the backup by run 48a7f1c2 in 8 s

While it lasts it reads ``loss 02:15:03 UTC, 5 stores without a position (Redis flushed):
run 48a7f1c2 of recover_sync_positions is restoring them (started)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ecosync_pipeline.positions.outcomes import RestoreReport
from ecosync_pipeline.positions.recovery import already_healthy

LAYER_WORDS: Mapping[str, str] = {
    "redis": "Redis (verified on the API)",
    "json": "the backup",
    "database": "the orders database",
    "calculated": "page 1 (no orders yet)",
}
"""Each layer a position can be restored from, as the story says it."""
SHOWN_STORES = 5
"""Stores named in the line; more are counted ("and 12 more")."""


def clock(moment: datetime, today: datetime) -> str:
    """A time as the story says it: '02:15:03 UTC', with the date when not ``today``'s."""
    if moment.date() == today.date():
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """'8 s', '2 min 5 s', '1 h 3 min': how long a restore took, as people say it."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def stores_said(stores: Sequence[str]) -> str:
    """'1 store (NATUR)', '5 stores (A, B, C, D, E)', '40 stores (A, ... and 35 more)'."""
    word = "1 store" if len(stores) == 1 else f"{len(stores)} stores"
    if not stores:
        return word
    named = ", ".join(stores[:SHOWN_STORES])
    more = len(stores) - SHOWN_STORES
    return f"{word} ({named}{f' and {more} more' if more > 0 else ''})"


def layers_said(restored_from: Mapping[str, str]) -> str:
    """'from the backup', or 'from the backup (3) and the orders database (2)' (most first)."""
    counts: dict[str, int] = {}
    for layer in restored_from.values():
        counts[layer] = counts.get(layer, 0) + 1
    if len(counts) == 1:
        return f"from {LAYER_WORDS.get(next(iter(counts)), next(iter(counts)))}"
    most_first = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    parts = [f"{LAYER_WORDS.get(layer, layer)} ({n})" for layer, n in most_first]
    return "from " + ", ".join(parts[:-1]) + f" and {parts[-1]}"


@dataclass(frozen=True)
class LossStory:
    """One loss, from when it was seen to its restore (``restored_at`` None while it lasts)."""

    event_id: str
    seen_at: datetime
    stores: tuple[str, ...]
    """The stores that lost their position (while it lasts) or were restored (after)."""
    redis_state: str = "ok"
    restored_from: Mapping[str, str] = field(default_factory=dict)
    """Each restored store's layer: json, database, redis (moved on the API), calculated."""
    restored_by: str | None = None
    """The run that restored them (None: a restore outside Dagster, or still lost)."""
    restored_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        """From seen to restored, in seconds (None while the loss lasts)."""
        if self.restored_at is None:
            return None
        return max(0.0, (self.restored_at - self.seen_at).total_seconds())

    def line(self, now: datetime, under_way: str = "") -> str:
        """The story in one line, as of ``now`` (``under_way``: the restore running, named)."""
        seen = clock(self.seen_at, now)
        if self.seconds is None:
            state = "" if self.redis_state == "ok" else f" (Redis {self.redis_state})"
            then = under_way or "not restored yet"
            return f"loss {seen}, {stores_said(self.stores)} without a position{state}: {then}"
        by = f"by run {self.restored_by[:8]}" if self.restored_by else "by a restore"
        return (
            f"last loss {seen}, {stores_said(self.stores)}, restored "
            f"{layers_said(self.restored_from)} {by} in {duration(self.seconds)}"
        )


def restored_story(
    event_id: str,
    seen_at: datetime,
    reports: Sequence[RestoreReport],
    *,
    redis_state: str,
    run_id: str | None,
    restored_at: datetime,
) -> LossStory | None:
    """The story of a restore, or None when it found nothing to do (every store already
    healthy in Redis, or failed): such a run is no loss's story."""
    restored = {
        r.store: str(r.restored_from)
        for r in reports
        if r.ok and r.restored_from is not None and not already_healthy(r)
    }
    if not restored:
        return None
    return LossStory(
        event_id=event_id,
        seen_at=min(seen_at, restored_at),
        stores=tuple(restored),
        redis_state=redis_state,
        restored_from=restored,
        restored_by=run_id,
        restored_at=restored_at,
    )
