"""Cache-loss events: every kind, and the id that names one loss however often it is seen.

A sensor must launch one recovery per loss, however many ticks see it, and a new one for
every later loss, even while an earlier recovery has not run. ``detect`` reads one
Redis snapshot (every store's key, the sentinel, INFO's run_id) and names the loss:

    kind         seen when                                      id
    unreachable  Redis does not answer                          none (nothing to recover)
    flushed      the sentinel is gone while positions are       flushed:<the lost generation>
                 expected, or a plain write recreated it        flushed:<the new generation>
                 (a recovery's recreation settles the last      flushed:<the lost generation>
                 flush instead: ``mended`` when it left no      (mended)
                 store without its key)
    restarted    the sentinel survived (persistence) but Redis  restarted:<generation>:<run_id>
                 runs under another run_id
    missing      stores with orders, or listed in the           missing:<generation>:<epoch>:<d>
                 sentinel, have no key
    reset        a key is back at page 1 with nothing synced    reset:<generation>:<epoch>:<d>
                 while the database holds the store's orders

``<d>`` is ``digest`` of what makes this loss this one: each lost store with the time the
sentinel says it was last written, each reset key with the time it was written; the
epoch moves at every recovery. The lost generation is the one the JSON backup recorded
at the last write (it outlives the flush), else the one the caller saw last.

The caller keeps ``LossReport.cursor`` (the generation known last) and passes it back.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ecosync_pipeline.positions.redis_layer import RedisSnapshot
from ecosync_pipeline.storage import StoreSummary

LossKind = Literal["flushed", "restarted", "missing", "reset", "unreachable"]
RedisState = Literal["ok", "flushed", "restarted", "unreachable"]
Summaries = Mapping[str, StoreSummary]


def digest(parts: Iterable[str]) -> str:
    """The one digest of loss ids: short, stable, independent of the order of ``parts``."""
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def event_id(kind: LossKind, *parts: str) -> str:
    """The id of a loss event: its kind, then what tells this loss from any other."""
    return ":".join((kind, *parts))


@dataclass(frozen=True)
class LossReport:
    """What a look at Redis says: its state, the stores lost or reset, the event (if any)."""

    redis_state: RedisState
    missing: tuple[str, ...]
    resets: tuple[str, ...]
    kind: LossKind | None
    event_id: str | None
    cursor: str
    expected: int
    without_orders: tuple[str, ...] = ()
    """Stores with no key and no orders: nothing to lose, but not reported healthy."""
    error: str | None = None
    generation: str | None = None
    """The sentinel's generation now (None when it is gone or Redis is unreachable)."""
    mended: bool = False
    """A restore already mended this loss: a recovery's write recreated the sentinel after
    the flush and no store is without its key or reset. Nothing is left to recover."""

    @property
    def unreachable(self) -> bool:
        return self.redis_state == "unreachable"

    @property
    def flushed(self) -> bool:
        return self.redis_state == "flushed"

    @property
    def restarted(self) -> bool:
        return self.redis_state == "restarted"

    @property
    def lost(self) -> bool:
        """Positions were lost (a flush, or keys gone): a recovery is due."""
        return self.flushed or bool(self.missing)


def detect(
    snap: RedisSnapshot,
    stores: Sequence[str],
    *,
    cursor: str | None = None,
    summaries: Summaries | Callable[[], Summaries | None] | None = None,
    backup_generation: Callable[[], str | None] | None = None,
) -> LossReport:
    """Classify Redis (ok, flushed, restarted, unreachable) and name the loss, if any.

    ``summaries`` (the orders database's, or a function asked only when the snapshot
    alone cannot decide; it may answer None when the database is down) tells which
    stores have orders; ``backup_generation`` reads the generation the backup recorded,
    asked only when the sentinel is gone.
    """
    if not snap.available:
        return LossReport(
            "unreachable", (), (), "unreachable", None, cursor or "", 0, (), snap.error
        )
    sentinel = snap.sentinel
    listed = sentinel.stores if sentinel is not None else {}
    keys = _keys(snap, stores, listed, summaries)
    missing, without, resets, with_orders, db_down = keys
    expected = len(set(listed) & set(stores) | with_orders & set(stores))
    found = functools.partial(
        LossReport,
        missing=missing,
        resets=resets,
        expected=expected,
        without_orders=without,
        generation=sentinel.generation if sentinel else None,
    )
    if sentinel is None:
        if cursor is None and not snap.positions and not (with_orders or db_down):
            return found("ok", kind=None, event_id=None, cursor="", missing=())
        lost = (backup_generation() if backup_generation else None) or cursor
        lost = lost or f"run-{snap.run_id or 'unknown'}"
        return found("flushed", kind="flushed", event_id=event_id("flushed", lost), cursor=lost)
    generation = sentinel.generation
    if cursor is not None and generation != cursor:
        # A recovery's write recreated it: that settles the flush of ``cursor``. Any other
        # write recreated it after a loss nobody recovered: a loss of its own.
        by_recovery = sentinel.origin == "recovery"
        flushed = event_id("flushed", cursor if by_recovery else generation)
        mended = by_recovery and not missing and not resets
        return found("flushed", kind="flushed", event_id=flushed, cursor=generation, mended=mended)
    if snap.restarted:
        restarted = event_id("restarted", generation, str(snap.run_id))
        return found("restarted", kind="restarted", event_id=restarted, cursor=generation)
    epoch = str(sentinel.epoch)
    if missing:
        d = digest(f"{s}@{listed.get(s, '')}" for s in missing)
        lost_keys = event_id("missing", generation, epoch, d)
        return found("ok", kind="missing", event_id=lost_keys, cursor=generation)
    if resets:
        d = digest(f"{s}@{snap.positions[s].updated_at.isoformat()}" for s in resets)
        reset = event_id("reset", generation, epoch, d)
        return found("ok", kind="reset", event_id=reset, cursor=generation)
    return found("ok", kind=None, event_id=None, cursor=generation)


def _keys(
    snap: RedisSnapshot,
    stores: Sequence[str],
    listed: Mapping[str, str],
    summaries: Summaries | Callable[[], Summaries | None] | None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], set[str], bool]:
    """Which stores lost their key, have none and nothing to lose, or were reset; the
    stores with orders; whether the database was asked and could not answer."""
    keyless = [s for s in stores if s not in snap.positions]
    blank = [s for s in stores if (p := snap.positions.get(s)) is not None and p.target is None]
    unknown = [s for s in keyless if s not in listed]
    known, db_down = _ask(summaries, bool(blank or unknown))
    with_orders = {s for s, v in (known or {}).items() if v.order_count > 0}
    # A keyless store is lost when it was written or has orders; when the database was
    # asked and could not say, it is lost too: never reported healthy without a key.
    missing = tuple(
        s for s in keyless if s in listed or s in with_orders or (db_down and s in unknown)
    )
    if snap.sentinel is None and summaries is None:
        missing = tuple(keyless)  # a flush without the database: every keyless store
    without = tuple(s for s in keyless if s not in missing)
    return missing, without, tuple(s for s in blank if s in with_orders), with_orders, db_down


def _ask(
    summaries: Summaries | Callable[[], Summaries | None] | None, needed: bool
) -> tuple[Summaries | None, bool]:
    """The summaries (asked only when ``needed``), and whether the database failed to say."""
    if not callable(summaries):
        return summaries, False
    if not needed:
        return None, False
    answer = summaries()
    return answer, answer is None
