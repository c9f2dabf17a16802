"""bench soak in a small form: everything at once for a few seconds, then the table judged.

Real processes (`ecosync sync`, `reconcile`, `refresh-statuses`, `webhooks serve`), real
Redis and PostgreSQL, the simulator over HTTP: the same code as `ecosync bench soak`,
with three small stores and a short churn.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from ecosync_pipeline.lab.bench.soak import SoakPlan, run_soak
from ecosync_pipeline.lab.bench.soak_watch import Watcher
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.storage.schema import orders
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.inbox import Delivery, store_delivery
from ecosync_pipeline_tests.conftest import REDIS_MARKER, TEST_POSTGRES_ADMIN_URL

SMALL = SoakPlan(
    minutes=0.4,
    stores=3,
    orders=150,
    sync_every=2.0,
    reconcile_every=4.0,
    refresh_every=5.0,
    chaos_every=2.0,
    large_order_rate=0.1,
)


@pytest.mark.slow
def test_soak_leaves_the_table_equal_to_the_simulator_after_everything_at_once(
    redis_url: str,
) -> None:
    report = run_soak(
        seeds=1,
        plan=SMALL,
        redis_url=redis_url,
        redis_marker=REDIS_MARKER,
        postgres_admin_url=TEST_POSTGRES_ADMIN_URL,
    )
    [seed] = report.seeds
    # Everything happened: both read modes, all three commands, the faults, the pushes.
    assert {s.mode for s in seed.stores} == {"pages", "cursor"}
    kinds = {c["command"]: c["runs"] for c in seed.commands()}
    assert kinds["sync"] >= 2 and kinds["reconcile"] >= 1 and kinds["refresh-statuses"] >= 1
    for fault in ("receiver killed", "redis flushed", "connections terminated"):
        assert seed.chaos.get(fault, 0) >= 1, seed.chaos
    assert seed.changes["created"] > 0 and seed.changes["deleted"] > 0
    assert seed.changes["status"] > 0
    assert seed.deliveries.acknowledged > 0
    assert seed.deliveries.answers.get("413", 0) + seed.deliveries.inbox.get("refused", 0) > 0
    assert seed.calls > 0 and seed.seconds > 0
    # The verdict: nothing missing, duplicated, stale, unflagged, wrongly flagged or lost.
    evidence = "\n".join(str(d) for d in seed.evidence.get("swept", [])[:20])
    assert report.total.as_dict() == dict.fromkeys(report.total.as_dict(), 0), evidence
    assert not report.failed and not seed.problems, seed.problems
    data = json.loads(json.dumps(report.as_dict(), default=str))
    assert data["passed"] and data["total"]["missing"] == 0
    assert "FAILED" not in report.table() and "PASSED" in report.table()


def _deliver(engine: Engine, event: str, order: dict[str, object]) -> None:
    body = json.dumps({"data": order}).encode()
    store_delivery(
        engine,
        Delivery("SHOP", event, "1", int(str(order["id"])), body, datetime.now(timezone.utc)),
    )


def test_watcher_sees_applied_deliveries_that_the_table_later_undoes(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    at = "2026-01-01T10:00:00.000000Z"
    try:
        _deliver(
            engine, "OrderCreated", {"id": 7, "updated_at": at, "order_state_name": "Confirmé"}
        )
        _deliver(engine, "OrderDeleted", {"id": 8, "updated_at": at, "deleted_at": at})
        _deliver(engine, "OrderCreated", {"id": 9, "updated_at": at, "order_state_name": "Livré"})
        apply_pending(engine, {"SHOP": "SHOP"})
        watcher = Watcher(postgres_url)
        watcher.look(engine, 1.0)
        assert watcher.undone == {} and watcher.looks == 1
        # What a stale page would do: order 8 live again, order 7 back to an older state.
        with engine.begin() as conn:
            conn.execute(update(orders).where(orders.c.order_id == 8).values(deleted_at=None))
            older = datetime(2026, 1, 1, 9, 59, 59, tzinfo=timezone.utc)
            conn.execute(update(orders).where(orders.c.order_id == 7).values(updated_at=older))
        watcher.look(engine, 2.0)
        seen = {key[1]: text for key, text in watcher.undone.items()}
        assert set(seen) == {7, 8}
        assert seen[8].startswith("live although its deletion was applied")
        assert seen[7].startswith("older than the delivery applied")
    finally:
        engine.dispose()
