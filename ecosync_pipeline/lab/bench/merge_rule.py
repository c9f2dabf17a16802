"""`ecosync bench merge`: the poll, the webhooks and the reconciliation meeting in one table.

Each row is one case of issue 23's "Done when", run against the simulator served over
HTTP, the receiver served over HTTP and a real orders database:

- a deletion delivered while a page read before it is in flight (the deletion leaving
  ``updated_at`` as it was, or moving it on): the row's end state after the page commits;
- two deliveries of one order in one second (Confirmé then En cours, and the reverse):
  the row's end state against EcoManager's;
- ``ecosync reconcile --max-calls 1`` and ``ecosync refresh-statuses --max-calls 1`` on a
  table whose count sends the locator far off: the calls spent, counted by the server;
- a sync started while a reconciliation runs: whether it succeeds, its seconds against
  the same sync alone;
- a signed delivery of order id 2^63: the answer, the inbox status, the check.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import delete, select

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.lab.bench.mirror_world import MirrorWorld, mirror_world
from ecosync_pipeline.lab.bench.report import format_table, machine
from ecosync_pipeline.lab.bench.resources import (
    Backend,
    bench_database,
    bench_redis_url,
    claimed_redis,
    temporary_folder,
)
from ecosync_pipeline.lab.simulator import StoreSpec, demo_token
from ecosync_pipeline.mirror import reconcile_store, refresh_statuses
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import write_page
from ecosync_pipeline.storage.schema import orders, webhook_inbox
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.health import delivery_health
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.signature import sign

Progress = Callable[[str], None]
SECRET_ENV = "ECOSYNC_BENCH_WEBHOOK_SECRET"
SECRET = "bench-webhook-secret-0123456789"
COLUMNS = ("case", "result", "promise")


@dataclass
class MergeRuleReport:
    """One row per case: what happened, and what the project promises."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        return format_table(COLUMNS, self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"machine": machine(), "figures": self.figures, "rows": self.rows}


@dataclass
class _Bench:
    """The world of one run: the simulator, the receiver's URL, the stores."""

    world: MirrorWorld
    receiver: str
    report: MergeRuleReport

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        with self.world.runtime() as rt:
            yield rt

    def deliver(self, store: str, event: str, body: bytes, webhook_id: str = "1") -> httpx.Response:
        headers = {
            "X-Ecomanager-Event": event,
            "X-Ecomanager-Webhook-ID": webhook_id,
            "X-Ecomanager-Signature": sign(SECRET, body),
        }
        return httpx.post(f"{self.receiver}/webhooks/{store}", content=body, headers=headers)


def _body(order: dict[str, Any]) -> bytes:
    return json.dumps({"data": order}, separators=(",", ":")).encode()


def _row_state(rt: Runtime, store: str, order_id: int) -> str:
    c = orders.c
    with rt.engine.connect() as conn:
        state, deleted_at = conn.execute(
            select(c.order_state, c.deleted_at).where(c.store == store, c.order_id == order_id)
        ).one()
    return "deleted" if deleted_at is not None else f"live ({state})"


def _later(stamp: str) -> str:
    moved = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(seconds=1)
    return moved.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _deletion_vs_page(bench: _Bench, touch: bool) -> None:
    """OrderDeleted applied while a page read before it is in flight; then the page commits."""
    sim, store = bench.world.simulator, "DEL"
    with bench.runtime() as rt, rt.client(rt.store(store)) as client:
        in_flight = client.fetch_page(1)
        victim = in_flight.orders[4 if touch else 3].id
        served: dict[str, Any] = sim.order(store, victim)  # type: ignore[assignment]
        sim.delete_orders(store, [victim])
        stamp = _later(served["updated_at"]) if touch else served["updated_at"]
        answer = bench.deliver(
            store, "OrderDeleted", _body({**served, "updated_at": stamp, "deleted_at": stamp})
        )
        apply_pending(rt.engine, {store: store})
        counts = write_page(rt.engine, store, 1, in_flight.orders, reader=client)
        state = _row_state(rt, store, victim)
    how = "newer updated_at" if touch else "same updated_at"
    bench.report.figures[f"deletion_vs_page_{how.split()[0]}"] = {
        "end_state": state,
        "reappeared": counts.reappeared,
        "stale": counts.stale,
        "delivery_status": answer.status_code,
    }
    bench.report.rows.append(
        (
            f"OrderDeleted ({how}) applied, then a page read before it commits",
            f"order {victim}: {state}; reappeared {counts.reappeared}, stale {counts.stale}",
            "deleted; reappeared 0",
        )
    )


def _same_second(bench: _Bench, arrival: tuple[str, str], index: int) -> None:
    """Two deliveries of one order in one second; EcoManager holds the last state."""
    sim, store = bench.world.simulator, "TIE"
    with bench.runtime() as rt, rt.client(rt.store(store)) as client:
        order_id = client.fetch_page(1).orders[index].id
        sim.set_status(store, order_id, "En cours")
        served: dict[str, Any] = sim.order(store, order_id)  # type: ignore[assignment]
        for n, state in enumerate(arrival):
            body = _body({**served, "order_state_name": state})
            bench.deliver(store, "OrderStatusChanged", body, webhook_id=f"{order_id}-{n}")
        done = apply_pending(rt.engine, {store: store}, readers=lambda _: client)
        state = _row_state(rt, store, order_id)
    bench.report.figures[f"same_second_{'_then_'.join(arrival)}"] = {
        "end_state": state,
        "ecomanager": "En cours",
        "ties": done.ties,
        "settled": done.settled,
    }
    bench.report.rows.append(
        (
            f"two deliveries of one second: {arrival[0]}, then {arrival[1]}",
            f"row {state}; EcoManager En cours; {done.ties} tie settled by {done.settled} read",
            "EcoManager's state",
        )
    )


def _max_calls(bench: _Bench) -> None:
    """--max-calls 1 on a table whose count sends the locator far off: calls spent."""
    sim, store = bench.world.simulator, "CAPS"
    with bench.runtime() as rt:
        rt.sync(store)
        ids = sorted(sim.ids(store))
        with rt.engine.begin() as conn:
            conn.execute(
                delete(orders).where(orders.c.store == store, orders.c.order_id.in_(ids[:-5]))
            )
            conn.execute(
                orders.update().where(orders.c.store == store).values(order_state="En cours")
            )
        configured = rt.store(store)
        for name, run in (("reconcile", reconcile_store), ("refresh-statuses", refresh_statuses)):
            sim.reset_counts(store)
            with rt.client(configured) as client:
                result = run(configured, client=client, engine=rt.engine, max_calls=1)
            served = sim.stats(store)["total"]
            bench.report.figures[f"max_calls_1_{name}"] = {
                "api_calls": result.api_calls,
                "server_counted": served,
            }
            bench.report.rows.append(
                (
                    f"{name} --max-calls 1 (the locator's hint 4 pages off)",
                    f"{result.api_calls} call spent; the server counted {served}",
                    "1 call",
                )
            )


def _sync_beside_reconcile(bench: _Bench) -> None:
    """A sync started while a reconciliation of the same store runs (150 ms a request)."""
    sim, store = bench.world.simulator, "BUSY"
    with bench.runtime() as rt:
        rt.sync(store)
    sim.set_faults(store, latency_ms=150)
    sim.add_orders(store, 40)
    with bench.runtime() as rt:
        alone = _timed(lambda: rt.sync(store))[1]
    sim.add_orders(store, 40)
    finished: dict[str, Any] = {}

    def sweep() -> None:
        with bench.runtime() as rt, rt.client(rt.store(store)) as client:
            finished["result"] = reconcile_store(rt.store(store), client=client, engine=rt.engine)

    thread = threading.Thread(target=sweep)
    thread.start()
    time.sleep(1.0)
    running = thread.is_alive()
    error = ""
    with bench.runtime() as rt:
        try:
            result, beside = _timed(lambda: rt.sync(store))
            outcome = f"succeeded, {result.orders_new} new"
        except Exception as exc:  # the figure is whether it fails, and how
            beside, outcome, error = 0.0, "FAILED", f"{type(exc).__name__}: {exc}"
    thread.join()
    sim.clear_faults(store)
    sweep_seconds = finished["result"].seconds if "result" in finished else None
    bench.report.figures["sync_during_reconcile"] = {
        "reconcile_running_at_start": running,
        "outcome": outcome,
        "error": error,
        "seconds_beside": round(beside, 2),
        "seconds_alone": round(alone, 2),
        "waited": round(max(0.0, beside - alone), 2),
        "reconcile_seconds": sweep_seconds,
    }
    bench.report.rows.append(
        (
            "a sync started during a reconcile (150 ms a request)",
            f"{outcome} in {beside:.2f} s (alone {alone:.2f} s: waited "
            f"{max(0.0, beside - alone):.2f} s); the sweep took {sweep_seconds} s",
            "succeeds, waits at most one page",
        )
    )


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def _bigint(bench: _Bench) -> None:
    """A signed delivery of order id 2^63: answered, kept, visible in the check."""
    store = "DEL"
    answer = bench.deliver(store, "OrderCreated", _body({"id": 2**63, "reference": "X"}), "big")
    with bench.runtime() as rt:
        c = webhook_inbox.c
        with rt.engine.connect() as conn:
            outcome, reason = conn.execute(
                select(c.outcome, c.reason).where(c.store == store, c.webhook_id == "big")
            ).one()
        health = delivery_health(rt.engine, store, datetime.now(timezone.utc))
    bench.report.figures["delivery_2_63"] = {
        "status": answer.status_code,
        "inbox_status": outcome,
        "reason": reason,
        "check_refused": health.refused,
        "check_passed": health.ok,
    }
    bench.report.rows.append(
        (
            "a signed delivery of order id 2^63",
            f"HTTP {answer.status_code}; inbox {outcome} ({reason}); the check counts "
            f"{health.refused} refused, {'passes' if health.ok else 'WARN'}",
            "200, kept refused, visible in the check",
        )
    )


SPECS = (
    StoreSpec("DEL", count=60, seed=1),
    StoreSpec("TIE", count=60, seed=2),
    StoreSpec("CAPS", count=500, seed=3),
    StoreSpec("BUSY", count=3000, seed=4),
)


def run_merge_rule_bench(
    *, backend: Backend = "postgresql", redis_url: str | None = None, progress: Progress
) -> MergeRuleReport:
    """Every case, on a database and a Redis database of the benchmark's own."""
    report = MergeRuleReport()
    environ = {spec.token_env: demo_token(spec.identifier) for spec in SPECS}
    environ[SECRET_ENV] = SECRET
    with (
        claimed_redis(redis_url or bench_redis_url()) as redis,
        temporary_folder() as folder,
        bench_database(backend, folder=folder) as database_url,
    ):
        settings = Settings(
            database_url=database_url,
            redis_url=redis.url,
            stores_file=str(folder / "unused.yaml"),
            backup_path=str(folder / "sync-positions.json"),
        )
        os.environ.update(environ)  # the clients read each store's token, as in production
        with mirror_world(settings, environ) as world:
            world.simulator.configure(SPECS)
            for spec in SPECS:
                world.add(spec, per_page=20, import_per_page=100)
            with world.runtime() as rt:
                for spec in SPECS[:2]:
                    rt.sync(spec.identifier)
                hooks = [_takes_webhooks(world.stores[s.identifier]) for s in SPECS[:2]]
                app = create_receiver_app(rt.engine, hooks)
                with ThreadedServer(app) as receiver:
                    bench = _Bench(world, receiver.url, report)
                    for step, name in _steps(bench):
                        step()
                        progress(f"{name}: done")
    report.figures["backend"] = backend
    return report


def _takes_webhooks(store: Store) -> Store:
    return replace(store, extra={**store.extra, "webhook_secret_env": SECRET_ENV})


def _steps(bench: _Bench) -> list[tuple[Callable[[], None], str]]:
    return [
        (lambda: _deletion_vs_page(bench, touch=False), "deletion vs page, same updated_at"),
        (lambda: _deletion_vs_page(bench, touch=True), "deletion vs page, newer updated_at"),
        (lambda: _same_second(bench, ("Confirmé", "En cours"), 1), "same second, in order"),
        (lambda: _same_second(bench, ("En cours", "Confirmé"), 2), "same second, reversed"),
        (lambda: _max_calls(bench), "--max-calls 1"),
        (lambda: _sync_beside_reconcile(bench), "a sync during a reconcile"),
        (lambda: _bigint(bench), "a delivery of id 2^63"),
    ]
