"""A store's rate budget as configured: calls per second, minute, hour and day.

The stores file may give a store a ``rate_budget`` mapping; windows it leaves out
follow from the per-second limit in the original system's proportions (4/s gives 40 a
minute, 800 an hour and 8,000 a day, under the contract's 5, 50, 1,000 and 10,000). A
store without one follows ``requests_per_second`` the same way. ecomanager/budget.py
counts the budget; this module only describes and validates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecosync_pipeline.errors import ConfigError

WINDOW_NAMES = ("second", "minute", "hour", "day")
WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The original system's budget, 4/s, 40/min, 800/h and 8,000/day: each window a multiple
# of the per-second limit, kept under the contract's 5, 50, 1,000 and 10,000.
WINDOW_MULTIPLE = {"second": 1, "minute": 10, "hour": 200, "day": 2000}
DEFAULT_FALLBACK_SHARE = 0.25


@dataclass(frozen=True)
class RateBudget:
    """A store's calls per window, shared by every process that calls EcoManager for it.

    ``fallback_share`` is the part of each window a process allows itself while Redis,
    where the budget is counted, is unreachable. ``time_scale`` shortens every window
    (for tests and benchmarks: 3600 makes an hour last a second).
    """

    per_second: int = 4
    per_minute: int = 40
    per_hour: int = 800
    per_day: int = 8000
    fallback_share: float = DEFAULT_FALLBACK_SHARE
    time_scale: float = 1.0

    def limits(self) -> dict[str, int]:
        """Each window's name and its limit, shortest window first."""
        return {name: getattr(self, f"per_{name}") for name in WINDOW_NAMES}

    def window_seconds(self, name: str) -> float:
        """The length of a window in real seconds (time_scale applied)."""
        return WINDOW_SECONDS[name] / self.time_scale

    @classmethod
    def derived(cls, per_second: int) -> RateBudget:
        """The original proportions for a per-second limit (4 gives 4, 40, 800, 8,000)."""
        return cls(**{f"per_{n}": per_second * WINDOW_MULTIPLE[n] for n in WINDOW_NAMES})


def parse_rate_budget(raw: Any, rps: float, where: str, store: str) -> RateBudget | None:
    """The store's ``rate_budget`` mapping; missing windows follow from the per-second one."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: store {store}: rate_budget must be a mapping")
    keys = [f"per_{n}" for n in WINDOW_NAMES] + ["fallback_share", "time_scale"]
    unknown = sorted(set(map(str, raw)) - set(keys))
    if unknown:
        raise ConfigError(
            f"{where}: store {store}: unknown rate_budget keys {', '.join(unknown)}; "
            f"use {', '.join(keys)}"
        )
    per_second = raw.get("per_second", max(1, int(rps)))
    base = RateBudget.derived(per_second if _whole(per_second) else 1)
    values: dict[str, Any] = {**{f"per_{n}": v for n, v in base.limits().items()}, **raw}
    for name in WINDOW_NAMES:
        value = values[f"per_{name}"]
        if not _whole(value) or value < 1:
            raise ConfigError(
                f"{where}: store {store}: rate_budget.per_{name} must be a whole number of "
                f"calls >= 1, got {value!r}"
            )
    for shorter, longer in zip(WINDOW_NAMES, WINDOW_NAMES[1:], strict=False):
        a, b = values[f"per_{shorter}"], values[f"per_{longer}"]
        if b <= a or b / WINDOW_SECONDS[longer] > a / WINDOW_SECONDS[shorter]:
            raise ConfigError(
                f"{where}: store {store}: rate_budget.per_{longer} ({b}) must be more than "
                f"per_{shorter} ({a}) and allow no more calls a second than it; lower it"
            )
    share = values.get("fallback_share", DEFAULT_FALLBACK_SHARE)
    if not _number(share) or not 0 < share <= 1:
        raise ConfigError(
            f"{where}: store {store}: rate_budget.fallback_share must be in (0, 1], got {share!r}"
        )
    scale = values.get("time_scale", 1.0)
    if not _number(scale) or scale <= 0:
        raise ConfigError(
            f"{where}: store {store}: rate_budget.time_scale must be > 0, got {scale!r}"
        )
    return RateBudget(
        per_second=values["per_second"],
        per_minute=values["per_minute"],
        per_hour=values["per_hour"],
        per_day=values["per_day"],
        fallback_share=float(share),
        time_scale=float(scale),
    )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
