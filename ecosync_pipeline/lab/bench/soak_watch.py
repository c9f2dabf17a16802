"""The soak's watcher: applied deliveries that the table later undoes, seen while it happens.

A sweep at the end mends what the churn broke, so the end state alone cannot show a
write that undid an applied delivery in the meantime: a page read before a deletion
that revives the order, an older state written over a newer one. Every few seconds the
watcher asks the orders database (one statement, so one consistent snapshot) for the
applied deliveries whose order the table now holds live although the delivery deleted
it, or holds older than the delivery carried. Ids are never reused and EcoManager
never moves an order back in time, so each is a delivery undone. The first sight of
each is kept, with what the table held then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.storage import make_engine

Key = tuple[str, int, str, str, str]
"""A delivery as the inbox keys it: store, order id, event, webhook id, body SHA-256."""

UNDONE = text(
    """
    SELECT i.store, i.order_id, i.event, i.webhook_id, i.body_sha256, i.outcome,
           o.order_state, o.updated_at,
           convert_from(i.body, 'UTF8')::jsonb #>> '{data,updated_at}' AS carried
    FROM webhook_inbox i
    JOIN orders o ON o.store = i.store AND o.order_id = i.order_id
    WHERE i.applied_at IS NOT NULL
      AND i.outcome IN ('applied', 'gap', 'stale')
      AND o.deleted_at IS NULL
      AND (i.event = 'OrderDeleted'
           OR o.updated_at < (convert_from(i.body, 'UTF8')::jsonb #>> '{data,updated_at}')
                             ::timestamptz)
    """
)
"""Applied deliveries the table contradicts now (PostgreSQL: the soak's database)."""


@dataclass
class Watcher:
    """Polls the orders database every ``every`` seconds from a thread until stopped."""

    database_url: str
    every: float = 2.0
    undone: dict[Key, str] = field(default_factory=dict)
    """Each delivery undone, and what the table held when it was first seen."""
    looks: int = 0
    failed_looks: int = 0
    clock: Callable[[], float] = time.monotonic
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name="soak-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        engine = make_engine(self.database_url)
        started = self.clock()
        try:
            while not self._stop.wait(self.every):
                self.look(engine, self.clock() - started)
        finally:
            engine.dispose()

    def look(self, engine: Engine, at: float) -> None:
        """One look; a look that fails (its connection terminated by the soak) is counted."""
        try:
            with engine.connect() as conn:
                rows = conn.execute(UNDONE).all()
        except SQLAlchemyError:
            self.failed_looks += 1
            return
        self.looks += 1
        for r in rows:
            key: Key = (r.store, int(r.order_id), r.event, r.webhook_id, r.body_sha256)
            if key in self.undone:
                continue
            what = (
                "live although its deletion was applied"
                if r.event == "OrderDeleted"
                else f"older than the delivery applied ({r.carried})"
            )
            self.undone[key] = (
                f"{what}, seen {at:.0f} s into the churn: row {r.order_state} updated "
                f"{r.updated_at.isoformat()} (inbox outcome {r.outcome})"
            )
