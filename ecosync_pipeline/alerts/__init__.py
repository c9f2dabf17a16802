"""Alerts: told without looking, once, to Slack and by e-mail (no Dagster here).

    message.py   Alert: the stores, what happened and the fix, as text
    settings.py  AlertSettings: the channels, from ECOSYNC_SLACK_* and ECOSYNC_SMTP_*
    channels.py  SlackChannel (slack_sdk), EmailChannel (smtplib), Notifier (both)
    rules.py     AlertRules and AlertState: when to tell, and what is remembered

The Dagster sensors that feed and send them are in ecosync_pipeline.defs.alerts.
"""

from ecosync_pipeline.alerts.channels import AlertNotSent, Delivery, Notifier
from ecosync_pipeline.alerts.message import Alert, AlertKind
from ecosync_pipeline.alerts.rules import (
    LOSS_GRACE_SECONDS,
    STREAK,
    AlertRules,
    AlertState,
    CheckResult,
    Observation,
    StoreRun,
    recovery_failed,
)
from ecosync_pipeline.alerts.settings import AlertSettings

__all__ = [
    "LOSS_GRACE_SECONDS",
    "STREAK",
    "Alert",
    "AlertKind",
    "AlertNotSent",
    "AlertRules",
    "AlertSettings",
    "AlertState",
    "CheckResult",
    "Delivery",
    "Notifier",
    "Observation",
    "StoreRun",
    "recovery_failed",
]
