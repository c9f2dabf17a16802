"""Sending an alert: to Slack (slack_sdk's WebClient, chat.postMessage) and by e-mail (SMTP).

Each channel reads its secret when it sends (from the variable or the file), so a rotated
token or password needs no restart. A channel that fails does not stop the other: the
Notifier tries each and returns what was delivered and what failed, with a reason that
names the channel and never a secret.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from ecosync_pipeline.alerts.message import Alert
from ecosync_pipeline.alerts.settings import AlertSettings, SlackSettings, SmtpSettings
from ecosync_pipeline.errors import EcosyncError, SecretFileError
from ecosync_pipeline.redact import Redactor
from ecosync_pipeline.secrets import SecretSource, read_secret_file

logger = logging.getLogger(__name__)
SLACK_TIMEOUT_SECONDS = 15


class AlertNotSent(EcosyncError):
    """A channel could not deliver an alert; the message names the channel and the reason."""

    retryable = True

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"alert not sent to {channel}: {reason}")


def read_channel_secret(source: SecretSource, environ: Mapping[str, str], channel: str) -> str:
    """A channel's secret read now; AlertNotSent naming the variable or file when absent."""
    if source.file is not None:
        try:
            return read_secret_file(source.file, store="alerts", key=f"{channel} secret file")
        except SecretFileError as exc:
            raise AlertNotSent(
                channel,
                f"the secret file {exc.path} {exc.reason}; write the secret alone in it",
            ) from None
    value = environ.get(source.env or "", "")
    if not value:
        raise AlertNotSent(channel, f"{source.env} is empty or unset")
    return value


class Channel(Protocol):
    """Somewhere an alert is sent."""

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise AlertNotSent."""


class SlackChannel:
    """Posts alerts to one Slack channel with chat.postMessage."""

    name = "Slack"

    def __init__(
        self,
        settings: SlackSettings,
        environ: Mapping[str, str],
        client: Callable[..., WebClient] = WebClient,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._client = client

    def send(self, alert: Alert) -> None:
        token = read_channel_secret(self._settings.token, self._environ, self.name)
        options: dict[str, Any] = {"token": token, "timeout": SLACK_TIMEOUT_SECONDS}
        if self._settings.base_url:
            options["base_url"] = self._settings.base_url
        try:
            self._client(**options).chat_postMessage(
                channel=self._settings.channel, text=alert.text(), unfurl_links=False
            )
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise AlertNotSent(
                f"{self.name} channel {self._settings.channel}",
                f"Slack answered {error or 'an error'}; check the bot token and that the bot "
                "is in the channel",
            ) from None
        except (SlackClientError, OSError) as exc:
            reason = Redactor([token])(f"{type(exc).__name__}: {exc}")
            raise AlertNotSent(
                f"{self.name} channel {self._settings.channel}", f"{reason[:300]}"
            ) from None


class EmailChannel:
    """Sends alerts by e-mail through one SMTP server (smtplib)."""

    name = "e-mail"

    def __init__(self, settings: SmtpSettings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ

    def message(self, alert: Alert) -> EmailMessage:
        """The e-mail of ``alert``: its title as the subject, its text as the body."""
        s = self._settings
        mail = EmailMessage()
        mail["Subject"] = alert.subject()
        mail["From"] = s.sender
        mail["To"] = ", ".join(s.recipients)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=s.sender.rpartition("@")[2] or None)
        mail.set_content(alert.text())
        return mail

    def send(self, alert: Alert) -> None:
        s = self._settings
        where = f"{self.name} via {s.host}:{s.port}"
        password = (
            read_channel_secret(s.password, self._environ, self.name)
            if s.password is not None
            else None
        )
        context = ssl.create_default_context()
        try:
            smtp = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
                if s.security == "ssl"
                else smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            )
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=context)
                if s.username is not None and password is not None:
                    smtp.login(s.username, password)
                smtp.send_message(self.message(alert))
        except (smtplib.SMTPException, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if password:
                reason = Redactor([password])(reason)
            hint = "check the ECOSYNC_SMTP_* settings"
            raise AlertNotSent(where, f"{reason[:300]}; {hint}") from None


@dataclass(frozen=True)
class Delivery:
    """What became of one alert: the channels that took it and those that failed (why)."""

    alert: Alert
    sent: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the logs: the alert's title and where it went."""
        parts = [f"sent to {', '.join(self.sent)}"] if self.sent else []
        parts += [f"NOT sent to {name} ({reason})" for name, reason in self.failed.items()]
        return f"{self.alert.title}: {'; '.join(parts) or 'no channel configured'}"


class Notifier:
    """Sends each alert to every configured channel, one failing not stopping the others."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)

    @classmethod
    def from_settings(
        cls, settings: AlertSettings, environ: Mapping[str, str] | None = None
    ) -> Notifier:
        """The channels ``settings`` configure (none: alerts are only logged)."""
        env = os.environ if environ is None else environ
        channels: list[Channel] = []
        if settings.slack is not None:
            channels.append(SlackChannel(settings.slack, env))
        if settings.smtp is not None:
            channels.append(EmailChannel(settings.smtp, env))
        return cls(channels)

    def send(self, alert: Alert) -> Delivery:
        """Send ``alert`` to each channel; log and return what went where."""
        sent: list[str] = []
        failed: dict[str, str] = {}
        for channel in self.channels:
            try:
                channel.send(alert)
            except AlertNotSent as exc:
                failed[exc.channel] = exc.reason
            else:
                sent.append(channel.name)
        delivery = Delivery(alert, tuple(sent), failed)
        log = logger.error if failed else logger.info
        log("alert %s", delivery.summary())
        return delivery
