"""`ecosync bench mirror`: the faithful-mirror scenarios, for pages, pages + reconcile, cursor.

1. Deletions and arrivals at the same instant during a run (``swap_rate``), one seed per
   store of 1,200 orders: what ``ecosync sync`` leaves missing in page mode, what the
   completeness check says, what ``ecosync reconcile`` leaves; the same in cursor mode.
2. One deletion during a run on a server without ``meta`` (the proxy of mirror_world).
3. A NATUR-sized store (the demo's: ids to 181,601, 3% gaps): a full reconcile with
   nothing to find (calls against pages + 2, peak memory against a store a tenth its
   size), 500 old orders deleted upstream, 1,000 status changes and the status refresh,
   and cursor-mode incremental syncs of k new orders against ceil(k / 100) + 1.

Every figure is counted on the orders table against the simulator's own ids and states.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ecosync_pipeline.lab.bench.mirror_world import MirrorWorld, audit_table
from ecosync_pipeline.mirror import reconcile_store
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import store_summary
from ecosync_pipeline.tables import format_table

NATUR_LAST_ID = 181_601
SWAP_ORDERS = 1_200
SWAP_RATE = 0.4
"""At 20 a page a 1,200-order import is 61 requests: about 24 swaps."""
CURSOR_KS = (0, 1, 99, 100, 101, 250, 1_000)
STATUS_CHANGES = 1_000
STATUS_ARRIVALS = 500
SCENARIOS = ("swaps", "no-meta", "reconcile", "deletions", "statuses", "cursor")
OLD_DELETIONS = 500
Progress = Callable[[str], None]


@dataclass
class Row:
    """One line of the report."""

    scenario: str
    mode: str
    runs: int
    changes: int
    missing: int
    duplicated: int
    flagged: int
    wrongly_flagged: int
    stale: int | str
    check: str
    calls: int | str
    bound: str
    seconds: float
    note: str = ""


COLUMNS = (
    "scenario",
    "mode",
    "runs",
    "changes",
    "missing",
    "dup",
    "flagged",
    "wrongly flagged",
    "stale",
    "check",
    "calls",
    "bound",
    "seconds",
    "note",
)


@dataclass
class MirrorReport:
    """Every row, and the details per seed for JSON."""

    rows: list[Row] = field(default_factory=list)
    seeds: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        return format_table(COLUMNS, [tuple(asdict(r).values()) for r in self.rows])

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "seeds": self.seeds}


def _verdict(rt: Runtime, store_id: str) -> str:
    """What new_orders_complete reports for the store now (the check's own code)."""
    from ecosync_pipeline.defs.orders.checks import completeness_evaluation
    from ecosync_pipeline.sync.batch import audit_last_window, count_served

    summary = store_summary(rt.engine, store_id)
    evaluation = completeness_evaluation(
        summary, count_served(rt, summary), audit_last_window(rt, summary)
    )
    return "pass" if evaluation.passed else str(evaluation.severity.value)


def _judged(rt: Runtime, sim: Any, store_id: str, calls: int) -> tuple[Any, str, int]:
    """The table's audit, the check's verdict and the calls of one mode of a run."""
    return audit_table(rt.engine, sim, store_id), _verdict(rt, store_id), calls


def _reconcile(rt: Runtime, store_id: str) -> Any:
    store = rt.store(store_id)
    with rt.client(store) as client:
        return reconcile_store(store, client=client, engine=rt.engine)


def _swap_seed(world: MirrorWorld, seed: int) -> dict[str, Any]:
    """One seed: page mode then the reconciliation, and cursor mode, under swaps."""
    sim, pages, cursor = world.simulator, f"P{seed}", f"C{seed}"
    out: dict[str, Any] = {"seed": seed}
    with world.runtime() as rt:
        started = time.perf_counter()
        first = sim.last_id(pages) or 0
        sim.set_faults(pages, swap_rate=SWAP_RATE)
        synced = rt.sync(pages)
        sim.set_faults(pages, swap_rate=0.0)
        out["swaps"] = sum(1 for i in sim.ids(pages) if i > first)
        out["pages"] = _judged(rt, sim, pages, synced.api_calls)
        out["pages_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        fixed = _reconcile(rt, pages)
        out["reconcile"] = _judged(rt, sim, pages, fixed.api_calls)
        out["reconcile_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        first = sim.last_id(cursor) or 0
        sim.set_faults(cursor, swap_rate=1.0)
        read = rt.sync(cursor)
        sim.set_faults(cursor, swap_rate=0.0)
        out["cursor_swaps"] = sum(1 for i in sim.ids(cursor) if i > first)
        out["cursor"] = _judged(rt, sim, cursor, read.api_calls)
        out["cursor_seconds"] = time.perf_counter() - started
    return out


def _seed_rows(scenario: str, results: Sequence[dict[str, Any]]) -> list[Row]:
    rows = []
    for mode, key, swaps in (
        ("pages", "pages", "swaps"),
        ("pages + reconcile", "reconcile", "swaps"),
        ("cursor", "cursor", "cursor_swaps"),
    ):
        audits = [r[key][0] for r in results]
        verdicts = [r[key][1] for r in results]
        worst = "ERROR" if "ERROR" in verdicts else ("WARN" if "WARN" in verdicts else "pass")
        rows.append(
            Row(
                scenario=scenario,
                mode=mode,
                runs=len(results),
                changes=sum(r[swaps] for r in results),
                missing=sum(a.missing for a in audits),
                duplicated=sum(a.duplicated for a in audits),
                flagged=sum(a.flagged for a in audits),
                wrongly_flagged=sum(a.wrongly_flagged for a in audits),
                stale="-",
                check=f"{worst} {verdicts.count(worst)}/{len(verdicts)}",
                calls=int(statistics.median(r[key][2] for r in results)),
                bound="-",
                seconds=round(statistics.median(r[f"{key}_seconds"] for r in results), 2),
                note=f"missing per run {min(a.missing for a in audits)}-"
                f"{max(a.missing for a in audits)}",
            )
        )
    return rows


def _no_meta(world: MirrorWorld) -> list[dict[str, Any]]:
    """One order deleted during the run, on the server without meta, in both modes."""
    sim, out = world.simulator, []
    for store_id, at in (("NMP", 10), ("NMC", 3)):
        victim = sim.page_ids(store_id, 3, 20)[5] if store_id == "NMP" else sim.last_id(store_id)
        base = world.proxy.requests

        def delete(
            n: int, store_id: str = store_id, victim: Any = victim, base: int = base, at: int = at
        ) -> None:
            if n - base == at:
                sim.delete_orders(store_id, [victim])

        world.proxy.before_request = delete
        with world.runtime() as rt:
            started = time.perf_counter()
            synced = rt.sync(store_id)
            world.proxy.before_request = None
            key = "cursor" if store_id == "NMC" else "pages"
            result = {
                "seed": 0,
                "swaps": 1,
                "cursor_swaps": 1,
                key: _judged(rt, sim, store_id, synced.api_calls),
                f"{key}_seconds": time.perf_counter() - started,
            }
            if key == "pages":
                started = time.perf_counter()
                fixed = _reconcile(rt, store_id)
                result["reconcile"] = _judged(rt, sim, store_id, fixed.api_calls)
                result["reconcile_seconds"] = time.perf_counter() - started
        out.append(result)
    pages, cursor = out
    return [{**pages, **{k: v for k, v in cursor.items() if k.startswith("cursor")}}]
