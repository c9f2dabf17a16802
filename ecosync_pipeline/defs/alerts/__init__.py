"""The alerts domain: sensors that tell, once each, what needs a person (see sensors.py).

``build_alerts_definitions`` gives the code location its two sensors; where the alerts
go is read from ECOSYNC_SLACK_* and ECOSYNC_SMTP_* (ecosync_pipeline.alerts.settings)
when a sensor ticks, never at import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from dagster import Definitions

from ecosync_pipeline.alerts import AlertSettings
from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.alerts.sensors import (
    DEFAULT_INTERVAL_SECONDS,
    build_alerts_sensor,
    build_recovery_failure_sensor,
)
from ecosync_pipeline.errors import ConfigError

logger = logging.getLogger(__name__)
_said: set[str] = set()
"""What this process already logged: a CLI command loads the code location many times."""


def _once(level: int, message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.log(level, message)


def build_alerts_definitions(
    settings: Settings,
    *,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Definitions:
    """The alert sensors for the stores of ``settings``; logs where alerts go (or that
    none is configured, so nothing is sent), once a process."""
    try:
        alerts = AlertSettings.from_env(environ)
    except ConfigError as exc:
        # The sensors' ticks fail with the same message until it is fixed; syncs go on.
        _once(logging.ERROR, f"alerts are misconfigured: {exc}")
    else:
        # A warning when nothing is configured: shown by a process's default logging.
        _once(
            logging.INFO if alerts.configured else logging.WARNING,
            f"alerts for the stores of {settings.stores_file}: {alerts.describe()}",
        )
    return Definitions(
        sensors=[
            build_recovery_failure_sensor(interval_seconds, environ),
            build_alerts_sensor(interval_seconds, environ, clock),
        ]
    )
