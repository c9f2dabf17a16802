"""The figures of ``ecosync bench soak``: per store, per seed and in total, with the evidence."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ecosync_pipeline.lab.bench.report import machine
from ecosync_pipeline.lab.bench.soak_audit import Counts, DeliveryFigures, Discrepancy
from ecosync_pipeline.lab.bench.soak_churn import CommandRun
from ecosync_pipeline.tables import format_table

COUNT_COLUMNS = (
    "missing",
    "duplicated",
    "states differing",
    "deletions not flagged",
    "flagged wrongly",
    "acknowledged not applied",
)
SHOWN_DISCREPANCIES = 40
STAGES = ("drained", "synced", "swept")
"""When the table is judged: once the churn stopped and the deliveries drained (what the
churn left), after one more ``ecosync sync``, and after one whole reconcile sweep (the
verdict). Acknowledged deliveries are judged once, at the drain, and counted in each."""
STAGE_TITLES = {
    "drained": "when the churn stopped and the deliveries drained",
    "synced": "after the final sync",
    "swept": "after the final sync and one reconcile sweep",
}


@dataclass
class StoreResult:
    """One store of one seed: its size, the calls it was asked, its counts at each stage."""

    store: str
    mode: str
    orders: int
    calls: int
    stages: dict[str, Counts]

    @property
    def final(self) -> Counts:
        return self.stages["swept"]


@dataclass
class SeedResult:
    """Everything one seed did and found."""

    seed: int
    minutes: float
    seconds: float
    stores: list[StoreResult] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    chaos: dict[str, int] = field(default_factory=dict)
    deliveries: DeliveryFigures = field(default_factory=DeliveryFigures)
    runs: list[CommandRun] = field(default_factory=list)
    evidence: dict[str, list[Discrepancy]] = field(default_factory=dict)
    """Per stage, what the table got wrong (at most EXAMPLES per store and kind)."""
    problems: list[str] = field(default_factory=list)
    watched: dict[str, int] = field(default_factory=dict)
    """The watcher's looks during the churn and the deliveries it saw undone."""

    def at(self, stage: str) -> Counts:
        """The seed's counts at a stage (its stores summed)."""
        total = Counts()
        for s in self.stores:
            total.add(s.stages[stage])
        return total

    @property
    def final(self) -> Counts:
        return self.at("swept")

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stores)

    def commands(self) -> list[dict[str, Any]]:
        """Per kind of command: runs, failures, kills and the errors the failures named."""
        out = []
        for kind in dict.fromkeys(r.kind for r in self.runs):
            runs = [r for r in self.runs if r.kind == kind]
            errors = Counter(e for r in runs if r.failed for e in r.errors or ("(none named)",))
            out.append(
                {
                    "command": kind,
                    "runs": len(runs),
                    "failed": sum(r.failed for r in runs),
                    "killed": sum(r.killed for r in runs),
                    "errors": dict(errors.most_common()),
                    "examples": _examples(runs),
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "minutes": self.minutes,
            "seconds": round(self.seconds, 1),
            "calls": self.calls,
            **self.final.as_dict(),
            "stages": {stage: self.at(stage).as_dict() for stage in STAGES},
            "stores": [
                {
                    "store": s.store,
                    "mode": s.mode,
                    "orders": s.orders,
                    "calls": s.calls,
                    **{stage: s.stages[stage].as_dict() for stage in STAGES},
                }
                for s in self.stores
            ],
            "changes": self.changes,
            "chaos": self.chaos,
            "watched": self.watched,
            "deliveries": asdict(self.deliveries),
            "commands": self.commands(),
            "discrepancies": {
                stage: [asdict(d) for d in items] for stage, items in self.evidence.items()
            },
            "problems": self.problems,
        }


def _examples(runs: list[CommandRun]) -> list[str]:
    """The last lines of one failed run per distinct error set (at most five)."""
    seen: dict[tuple[str, ...], str] = {}
    for r in runs:
        if r.failed and r.errors not in seen:
            seen[r.errors] = r.tail
    return list(seen.values())[:5]


def _counts(c: Counts) -> tuple[int, ...]:
    return (
        c.missing,
        c.duplicated,
        c.states_differing,
        c.deletions_not_flagged,
        c.flagged_wrongly,
        c.acknowledged_not_applied,
    )


@dataclass
class SoakReport:
    """Every seed of one `ecosync bench soak`."""

    seeds: list[SeedResult] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    """Also fail when the final sync alone left orders missing (what the sweep fetched)."""

    @property
    def total(self) -> Counts:
        total = Counts()
        for s in self.seeds:
            total.add(s.final)
        return total

    @property
    def missing_after_sync(self) -> dict[str, int]:
        """Per seed and store, the orders the final sync alone left missing."""
        return {
            f"{seed.seed}/{s.store}": s.stages["synced"].missing
            for seed in self.seeds
            for s in seed.stores
            if s.stages["synced"].missing
        }

    @property
    def failed(self) -> bool:
        """Any of the six counts above 0, or with ``strict`` an order the final sync alone
        left missing (the command's exit status is then 1)."""
        return self.total.total > 0 or (self.strict and bool(self.missing_after_sync))

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "soak",
            "plan": self.plan,
            "machine": machine(),
            "total": {
                **self.total.as_dict(),
                "calls": sum(s.calls for s in self.seeds),
                "seconds": round(sum(s.seconds for s in self.seeds), 1),
            },
            "seeds": [s.as_dict() for s in self.seeds],
            "missing_after_final_sync": self.missing_after_sync,
            "strict": self.strict,
            "passed": not self.failed,
        }

    def table(self) -> str:
        parts = [
            f"The table against the simulator {STAGE_TITLES['swept']} (the verdict):",
            self._verdict_table(),
            "",
            "Earlier stages, for the record (what the churn left; what one sync mends):",
            self._stages_table(),
            "",
            "What moved and what was done, per seed:",
            self._activity_table(),
            "",
            "Commands run during the churn and at the end:",
            self._commands_table(),
        ]
        for stage, title in (("swept", "the verdict"), ("synced", STAGE_TITLES["synced"])):
            found = [(s.seed, d) for s in self.seeds for d in s.evidence.get(stage, [])]
            if found:
                parts += ["", f"Discrepancies {title} (the first {SHOWN_DISCREPANCIES}):"]
                rows = [
                    (seed, d.store, d.order_id, d.kind, d.table, d.simulator)
                    for seed, d in found[:SHOWN_DISCREPANCIES]
                ]
                header = ("seed", "store", "id", "kind", "table", "simulator")
                parts.append(format_table(header, rows))
        problems = [(s.seed, p) for s in self.seeds for p in s.problems]
        if problems:
            parts += ["", "Problems met on the way:"]
            parts += [f"  seed {seed}: {p}" for seed, p in problems]
        figures = zip(COUNT_COLUMNS, _counts(self.total), strict=True)
        verdict = "PASSED" if not self.failed else "FAILED"
        parts += ["", f"{verdict}: " + ", ".join(f"{n} {v}" for n, v in figures)]
        left = self.missing_after_sync
        if left:
            shown = ", ".join(f"{k} {v:,}" for k, v in left.items())
            counted = "counted (--strict)" if self.strict else "not counted without --strict"
            parts.append(
                f"The final sync alone left {sum(left.values()):,} orders missing ({shown}); "
                f"the sweep fetched them; {counted}."
            )
        return "\n".join(parts)

    def _verdict_table(self) -> str:
        header = ("seed", "store", "mode", "orders", *COUNT_COLUMNS, "calls", "seconds")
        rows: list[tuple[Any, ...]] = []
        for seed in self.seeds:
            for s in seed.stores:
                rows.append(
                    (seed.seed, s.store, s.mode, s.orders, *_counts(s.final), s.calls, None)
                )
            orders = sum(s.orders for s in seed.stores)
            seconds = round(seed.seconds, 1)
            rows.append((seed.seed, "all", "", orders, *_counts(seed.final), seed.calls, seconds))
        rows.append(
            (
                "total",
                "",
                "",
                sum(s.orders for seed in self.seeds for s in seed.stores),
                *_counts(self.total),
                sum(seed.calls for seed in self.seeds),
                round(sum(seed.seconds for seed in self.seeds), 1),
            )
        )
        return format_table(header, rows)

    def _stages_table(self) -> str:
        header = ("seed", "store", "mode", "stage", *COUNT_COLUMNS)
        rows = [
            (seed.seed, s.store, s.mode, stage, *_counts(s.stages[stage]))
            for seed in self.seeds
            for s in seed.stores
            for stage in ("drained", "synced")
        ]
        return format_table(header, rows)

    def _activity_table(self) -> str:
        header = ("seed", "what", "figures")
        rows: list[tuple[Any, ...]] = []
        for s in self.seeds:
            d = s.deliveries
            for what, figures in (
                ("orders changed", s.changes),
                ("deliveries", d.sent),
                ("answers", d.answers),
                ("inbox outcomes", d.inbox),
                (
                    "acknowledged",
                    {
                        "distinct deliveries": d.acknowledged,
                        "webhooks disabled": d.webhooks_disabled,
                    },
                ),
                ("faults", s.chaos),
                ("watcher", s.watched),
            ):
                text = ", ".join(f"{k} {v:,}" for k, v in sorted(figures.items())) or "-"
                rows.append((s.seed, what, text))
        return format_table(header, rows)

    def _commands_table(self) -> str:
        header = ("seed", "command", "runs", "failed", "killed", "errors of the failed runs")
        rows = []
        for s in self.seeds:
            for c in s.commands():
                errors = ", ".join(f"{k} x{v}" for k, v in c["errors"].items()) or "-"
                rows.append((s.seed, c["command"], c["runs"], c["failed"], c["killed"], errors))
        return format_table(header, rows)
