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


def build_alerts_definitions(
    settings: Settings,
    *,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Definitions:
    """The alert sensors for the stores of ``settings``; logs where alerts go (or that
    none is configured, so nothing is sent)."""
    try:
        alerts = AlertSettings.from_env(environ)
    except ConfigError as exc:
        # The sensors' ticks fail with the same message until it is fixed; syncs go on.
        logger.error("alerts are misconfigured: %s", exc)
    else:
        # A warning when nothing is configured: shown by a process's default logging.
        log = logger.info if alerts.configured else logger.warning
        log("alerts for the stores of %s: %s", settings.stores_file, alerts.describe())
    return Definitions(
        sensors=[
            build_recovery_failure_sensor(interval_seconds, environ),
            build_alerts_sensor(interval_seconds, environ, clock),
        ]
    )
