"""Where alerts go, from ECOSYNC_* variables read when the sensors need them.

    Slack   ECOSYNC_SLACK_CHANNEL, and ECOSYNC_SLACK_TOKEN or ECOSYNC_SLACK_TOKEN_FILE
            (a bot token with chat:write); ECOSYNC_SLACK_BASE_URL for another Web API
            address (default Slack's own)
    e-mail  ECOSYNC_SMTP_HOST, ECOSYNC_SMTP_TO (comma-separated), ECOSYNC_SMTP_FROM;
            ECOSYNC_SMTP_PORT (default 25), ECOSYNC_SMTP_SECURITY (none, starttls or ssl;
            default starttls on port 587, ssl on 465, else none), ECOSYNC_SMTP_USER with
            ECOSYNC_SMTP_PASSWORD or ECOSYNC_SMTP_PASSWORD_FILE
    links   ECOSYNC_DAGSTER_URL, the Dagster UI's address, for a link in each message

Neither channel configured means no alert is sent (the sensors still log each one).
The tokens and passwords are read when a message is sent, from the variable or the file,
so a rotated secret needs no restart; they never appear in a log line or an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ecosync_pipeline.config import check_base_url
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.secrets import SecretSource

Security = Literal["none", "starttls", "ssl"]
SECURITIES: tuple[Security, ...] = ("none", "starttls", "ssl")
CONFIGURE_HINT = (
    "set ECOSYNC_SLACK_CHANNEL with ECOSYNC_SLACK_TOKEN (or ECOSYNC_SLACK_TOKEN_FILE), "
    "or ECOSYNC_SMTP_HOST with ECOSYNC_SMTP_TO and ECOSYNC_SMTP_FROM"
)


@dataclass(frozen=True)
class SlackSettings:
    """A Slack channel and where its token is read."""

    channel: str
    token: SecretSource
    base_url: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    """An SMTP server, the sender and the recipients of the alert e-mails."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    security: Security = "none"
    username: str | None = None
    password: SecretSource | None = None
    timeout: float = 20.0


@dataclass(frozen=True)
class AlertSettings:
    """The channels alerts go to (none, one or both) and the UI's address for links."""

    slack: SlackSettings | None = None
    smtp: SmtpSettings | None = None
    dagster_url: str | None = None

    @property
    def configured(self) -> bool:
        """True when at least one channel is configured."""
        return self.slack is not None or self.smtp is not None

    def describe(self) -> str:
        """Where alerts go, in one line for the logs (never a secret)."""
        if not self.configured:
            return f"no alert channel is configured, so no alert is sent; {CONFIGURE_HINT}"
        where = []
        if self.slack is not None:
            where.append(f"Slack channel {self.slack.channel}")
        if self.smtp is not None:
            where.append(
                f"e-mail to {', '.join(self.smtp.recipients)} via {self.smtp.host}:{self.smtp.port}"
            )
        return "alerts go to " + " and ".join(where)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """The settings from ECOSYNC_* variables; ConfigError naming the variable to fix."""
        env = os.environ if environ is None else environ
        url = _get(env, "ECOSYNC_DAGSTER_URL")
        return cls(
            slack=_slack(env),
            smtp=_smtp(env),
            dagster_url=_url(url, "ECOSYNC_DAGSTER_URL") if url else None,
        )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _url(value: str, name: str) -> str:
    try:
        return check_base_url(value)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _secret(env: Mapping[str, str], name: str) -> SecretSource | None:
    """Where a secret is read: the variable ``name`` itself, or the file ``name``_FILE names."""
    value, path = _get(env, name), _get(env, f"{name}_FILE")
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both (one source per secret)")
    if path:
        return SecretSource(file=path)
    return SecretSource(env=name) if value else None


def _slack(env: Mapping[str, str]) -> SlackSettings | None:
    channel, token = _get(env, "ECOSYNC_SLACK_CHANNEL"), _secret(env, "ECOSYNC_SLACK_TOKEN")
    base = _get(env, "ECOSYNC_SLACK_BASE_URL")
    if channel is None and token is None:
        return None
    if channel is None:
        raise ConfigError(
            "ECOSYNC_SLACK_TOKEN is set but not ECOSYNC_SLACK_CHANNEL: set the channel the "
            "alerts go to (e.g. #ecosync-alerts or its id)"
        )
    if token is None:
        raise ConfigError(
            f"ECOSYNC_SLACK_CHANNEL={channel} is set but no token: set ECOSYNC_SLACK_TOKEN "
            "(or ECOSYNC_SLACK_TOKEN_FILE, a file holding it) to a bot token with chat:write"
        )
    # slack_sdk joins method names to the base URL: it must end with a slash.
    base_url = _url(base, "ECOSYNC_SLACK_BASE_URL") + "/" if base else None
    return SlackSettings(channel=channel, token=token, base_url=base_url)


def _smtp(env: Mapping[str, str]) -> SmtpSettings | None:
    host = _get(env, "ECOSYNC_SMTP_HOST")
    to = _get(env, "ECOSYNC_SMTP_TO")
    if host is None:
        if to is not None:
            raise ConfigError("ECOSYNC_SMTP_TO is set but not ECOSYNC_SMTP_HOST: set the server")
        return None
    recipients = tuple(a.strip() for a in (to or "").split(",") if a.strip())
    sender = _get(env, "ECOSYNC_SMTP_FROM")
    if not recipients or sender is None:
        raise ConfigError(
            f"ECOSYNC_SMTP_HOST={host} is set: set ECOSYNC_SMTP_TO (comma-separated "
            "addresses) and ECOSYNC_SMTP_FROM too"
        )
    raw_port = _get(env, "ECOSYNC_SMTP_PORT") or "25"
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        raise ConfigError(f"ECOSYNC_SMTP_PORT={raw_port!r} is not a port number (1 to 65535)")
    port = int(raw_port)
    default: Security = "ssl" if port == 465 else "starttls" if port == 587 else "none"
    chosen = _get(env, "ECOSYNC_SMTP_SECURITY") or default
    security = next((s for s in SECURITIES if s == chosen), None)
    if security is None:
        raise ConfigError(f"ECOSYNC_SMTP_SECURITY={chosen!r} is invalid: use none, starttls or ssl")
    username = _get(env, "ECOSYNC_SMTP_USER")
    password = _secret(env, "ECOSYNC_SMTP_PASSWORD")
    if (username is None) != (password is None):
        raise ConfigError(
            "set ECOSYNC_SMTP_USER and ECOSYNC_SMTP_PASSWORD (or ECOSYNC_SMTP_PASSWORD_FILE) "
            "together, or neither"
        )
    return SmtpSettings(
        host=host,
        port=port,
        sender=sender,
        recipients=recipients,
        security=security,
        username=username,
        password=password,
    )
