"""When to alert: a store's third failed run in a row, a check turning ERROR, a loss
not mended within the grace; each told once, whatever the number of ticks that see it.

The rules read plain observations (a store's outcome in a finished run, a check's result)
in the order they happened, and keep what they must remember in an AlertState: failed
runs in a row per store, the checks failing at ERROR and since when, the loss and
whether it was told. The state is small JSON (only failing stores and checks are kept),
stored by the caller where it outlives a restart (the Dagster sensor's cursor).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ecosync_pipeline.alerts.message import Alert, clip

STREAK = 3
"""A store's failed runs in a row that make an alert (the fourth and later make none)."""
LOSS_GRACE_SECONDS = 300.0
"""How long the automatic recovery has to mend a loss before anyone is told."""

RECOVERY_FIX = (
    "Fix the cause named above, then restore the positions: materialize "
    "restored_sync_positions in the Dagster UI (the restore button) or run "
    "`ecosync positions restore`. Until then each store's sync resumes from the JSON "
    "backup or the orders database: no order is lost."
)
LOSS_FIX = (
    "cache_loss_sensor launches recover_sync_positions within a tick of a loss: look at "
    "its runs (queued behind another? failed?) and at Redis. Restore by hand: materialize "
    "restored_sync_positions in the Dagster UI or run `ecosync positions restore`. "
    "Meanwhile syncs resume from the JSON backup or the database: no order is lost."
)
STORE_FIX = (
    "Each reason says what to do (the store's token, its base_url, EcoManager's "
    "reachability, a held lock). Once fixed, sync the store again: materialize its "
    "new_orders partition or run `ecosync sync --store STORE`; the schedule retries it "
    "every tick meanwhile."
)


@dataclass(frozen=True)
class StoreRun:
    """One store's sync in one finished run: synced, or failed with its reason."""

    store: str
    ok: bool
    run_id: str
    timestamp: float
    reason: str = ""


@dataclass(frozen=True)
class CheckResult:
    """One evaluation of an asset check, as the rules need it."""

    asset: str
    check: str
    partition: str | None
    passed: bool
    error: bool
    """Its severity is ERROR (a failed WARN is not alerted)."""
    timestamp: float
    description: str
    what_to_do: str | None = None
    stores: tuple[str, ...] = ()
    """The stores it finds failing: its partition, or those its table names."""

    @property
    def key(self) -> str:
        """The check (and partition) this result is about: 'new_orders:complete[NATUR]'."""
        name = f"{self.asset}:{self.check}"
        return f"{name}[{self.partition}]" if self.partition is not None else name

    @property
    def failing(self) -> bool:
        """Failed at ERROR severity."""
        return not self.passed and self.error


Observation = StoreRun | CheckResult


@dataclass
class AlertState:
    """What the rules remember between ticks; JSON in the sensor's cursor."""

    runs_after: int | None = None
    """Storage id of the last finished run looked at (None: not started)."""
    runless_after: str | None = None
    """Where the check results recorded without a run (by sensors) were read up to."""
    streaks: dict[str, int] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    """Checks (with partition) failing at ERROR, and since when."""
    seen: dict[str, float] = field(default_factory=dict)
    """The time of the last result applied, per check without partitions (results of runs
    arrive when their run ends: an older one never undoes a newer)."""
    loss_stores: list[str] = field(default_factory=list)
    loss_what: str = ""
    loss_told: bool = False

    @classmethod
    def parse(cls, raw: str | None) -> AlertState:
        """The state from its JSON; empty or unreadable starts afresh."""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError:
            return cls()

    def dump(self) -> str:
        """The JSON kept between ticks."""
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class AlertRules:
    """Turns observations and the passing of time into alerts, each told once."""

    def __init__(
        self,
        loss_checks: Iterable[str],
        *,
        streak: int = STREAK,
        loss_grace_seconds: float = LOSS_GRACE_SECONDS,
        link: Callable[[str], str | None] = lambda path: None,
    ) -> None:
        self.loss_checks = frozenset(loss_checks)
        """Check keys whose ERROR is a loss of positions: told after the grace, not at once."""
        self.streak = streak
        self.grace = loss_grace_seconds
        self._link = link

    def observe(self, state: AlertState, observations: Sequence[Observation]) -> list[Alert]:
        """Apply ``observations`` in time order; the alerts they make (grouped per kind)."""
        failing: list[StoreRun] = []
        errors: list[CheckResult] = []
        for o in sorted(observations, key=lambda o: o.timestamp):
            if isinstance(o, StoreRun):
                if self._store_run(state, o):
                    failing.append(o)
            elif self._check(state, o):
                errors.append(o)
        alerts = [self._store_alert(failing)] if failing else []
        by_check: dict[str, list[CheckResult]] = {}
        for result in errors:
            by_check.setdefault(f"{result.asset}:{result.check}", []).append(result)
        alerts += [self._check_alert(results) for results in by_check.values()]
        return alerts

    def due(self, state: AlertState, now: float) -> list[Alert]:
        """The loss alert, once, when a loss has lasted the grace; [] otherwise."""
        since = [state.errors[k] for k in self.loss_checks if k in state.errors]
        if not since:
            state.loss_told, state.loss_stores, state.loss_what = False, [], ""
            return []
        began = min(since)
        if state.loss_told or now - began < self.grace:
            return []
        state.loss_told = True
        minutes = (now - began) / 60
        return [
            Alert(
                kind="loss_not_mended",
                title=f"ecosync: sync positions lost {minutes:.0f} min ago are not restored yet",
                stores=tuple(state.loss_stores),
                happened=(
                    f"since {_when(began)} the position checks fail at ERROR: {state.loss_what}",
                ),
                fix=LOSS_FIX,
                link=self._link(f"/assets/{min(self.loss_checks).split(':')[0]}?view=checks"),
                key=f"loss@{began}",
            )
        ]

    def _store_run(self, state: AlertState, run: StoreRun) -> bool:
        """Count the run in the store's streak; True when this failure is the STREAK-th."""
        if run.ok:
            state.streaks.pop(run.store, None)
            return False
        count = state.streaks.get(run.store, 0) + 1
        state.streaks[run.store] = count
        return count == self.streak

    def _check(self, state: AlertState, result: CheckResult) -> bool:
        """Follow the check's state; True when it turns ERROR and is not a loss check."""
        key = result.key
        if result.partition is None:
            if result.timestamp < state.seen.get(key, float("-inf")):
                return False  # a run's older result, arriving after a newer one
            state.seen[key] = result.timestamp
        loss = f"{result.asset}:{result.check}" in self.loss_checks
        if not result.failing:
            state.errors.pop(key, None)
            return False
        if loss and result.stores:
            state.loss_stores = list(result.stores)
            state.loss_what = clip(f"{result.check}: {result.description}", 400)
        if key in state.errors:
            return False
        state.errors[key] = result.timestamp
        return not loss

    def _store_alert(self, runs: Sequence[StoreRun]) -> Alert:
        stores = tuple(dict.fromkeys(r.store for r in runs))
        title = (
            f"ecosync: store {stores[0]} failed {self.streak} sync runs in a row"
            if len(stores) == 1
            else f"ecosync: {len(stores)} stores failed {self.streak} sync runs in a row"
        )
        return Alert(
            kind="store_failing",
            title=title,
            stores=stores,
            happened=tuple(
                f"{r.store}: {r.reason or 'the run failed'} (run {r.run_id[:8]})" for r in runs
            ),
            fix=STORE_FIX.replace("STORE", stores[0]) if len(stores) == 1 else STORE_FIX,
            link=self._link(f"/runs/{runs[-1].run_id}") if len(runs) == 1 else None,
            key="streak:" + ",".join(stores),
        )

    def _check_alert(self, results: Sequence[CheckResult]) -> Alert:
        first = results[0]
        stores = tuple(dict.fromkeys(s for r in results for s in r.stores))
        where = f" for {', '.join(stores[:3])}" + (" and more" if len(stores) > 3 else "")
        fixes = list(dict.fromkeys(r.what_to_do for r in results if r.what_to_do))[:3]
        return Alert(
            kind="check_error",
            title=f"ecosync: check {first.check} on {first.asset} turned ERROR{where}",
            stores=stores,
            happened=tuple(r.description for r in results),
            fix=" ".join(fixes) or f"Open the {first.check} check of {first.asset}.",
            link=self._link(f"/assets/{first.asset}?view=checks"),
            key="check:" + ",".join(r.key for r in results),
        )


def recovery_failed(
    run_id: str, reasons: Mapping[str, str], texts: Sequence[str], link: str | None
) -> Alert:
    """The alert of a failed recovery run: each store it names with its reason, or the
    run's failure messages when it names none."""
    stores = tuple(reasons)
    happened = tuple(reasons[s] for s in stores) or tuple(texts) or ("the run failed",)
    return Alert(
        kind="recovery_failed",
        title=f"ecosync: a recovery of the sync positions failed (run {run_id[:8]})",
        stores=stores,
        happened=happened,
        fix=RECOVERY_FIX,
        link=link,
        key=f"recovery:{run_id}",
    )
