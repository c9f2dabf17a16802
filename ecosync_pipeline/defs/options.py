"""The code location's options: schedules, sensor interval, batch sizes, freshness window and
where the code lives, each with its default and its ECOSYNC_* variable.

Every domain's ``build`` reads what it needs from one LocationOptions; ``from_env`` reads
the variables when Dagster loads the code location (never at import) and refuses a bad
value naming the variable and what it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.sync.batch import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    MAX_WORKERS,
    default_runs,
)

DEFAULT_SYNC_CRON = "*/15 * * * *"
DEFAULT_RECONCILE_CRON = "7 * * * *"
DEFAULT_STATUS_CRON = "20,50 * * * *"
DEFAULT_INTERVAL_SECONDS = 30
DEFAULT_FRESHNESS_MINUTES = 60
"""WARN when a store has not synced for an hour: four missed ticks of the schedule."""


@dataclass(frozen=True)
class LocationOptions:
    """What the definitions are built with (the defaults are those of a deployment)."""

    sync_cron: str = DEFAULT_SYNC_CRON
    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE
    """Stores a scheduled sync run at most."""
    workers: int = DEFAULT_WORKERS
    """Stores synced at once inside a run."""
    runs: int = 1
    """A tick's stores split across at least this many runs (when each gets enough)."""
    reconcile_cron: str = DEFAULT_RECONCILE_CRON
    status_cron: str = DEFAULT_STATUS_CRON
    freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES
    git_url: str | None = None
    """The repository the catalog's code references link to (else the local files)."""
    git_branch: str = "main"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LocationOptions:
        """The options the ECOSYNC_* variables give, defaults for the ones unset."""
        return cls(
            sync_cron=environ.get("ECOSYNC_SYNC_CRON") or DEFAULT_SYNC_CRON,
            sensor_interval_seconds=whole_number(
                environ,
                "ECOSYNC_SENSOR_INTERVAL_SECONDS",
                DEFAULT_INTERVAL_SECONDS,
                5,
                3600,
                "seconds",
            ),
            batch_size=whole_number(
                environ, "ECOSYNC_SYNC_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, 10_000, "stores"
            ),
            workers=whole_number(
                environ, "ECOSYNC_SYNC_WORKERS", DEFAULT_WORKERS, 1, MAX_WORKERS, "stores"
            ),
            # A tick's stores split across at least one run per core (when there are enough).
            runs=whole_number(environ, "ECOSYNC_SYNC_RUNS", default_runs(), 1, 1000, "runs"),
            reconcile_cron=environ.get("ECOSYNC_RECONCILE_CRON") or DEFAULT_RECONCILE_CRON,
            status_cron=environ.get("ECOSYNC_STATUS_CRON") or DEFAULT_STATUS_CRON,
            freshness_minutes=whole_number(
                environ,
                "ECOSYNC_FRESHNESS_MINUTES",
                DEFAULT_FRESHNESS_MINUTES,
                1,
                7 * 24 * 60,
                "minutes",
            ),
            git_url=environ.get("ECOSYNC_GIT_URL") or None,
            git_branch=environ.get("ECOSYNC_GIT_BRANCH") or "main",
        )


def whole_number(
    environ: Mapping[str, str], name: str, default: int, low: int, high: int, unit: str
) -> int:
    """The variable ``name`` as a whole number from ``low`` to ``high`` (``default`` unset)."""
    raw = environ.get(name) or str(default)
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(
            f"{name}={raw!r} is invalid: give a whole number of {unit} from {low} to "
            f"{high} (default {default})"
        )
    return int(raw)
