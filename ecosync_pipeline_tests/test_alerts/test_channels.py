"""Where alerts go (the ECOSYNC_SLACK_* and ECOSYNC_SMTP_* variables) and how they are
sent: to the local Slack stand-in through slack_sdk, and to the local SMTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecosync_pipeline.alerts import Alert, AlertSettings, Notifier
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline_tests.test_adversarial.support import leaked, make_token
from ecosync_pipeline_tests.test_alerts.conftest import CHANNEL
from ecosync_pipeline_tests.test_alerts.servers import SlackRecorder, SmtpRecorder

ALERT = Alert(
    kind="recovery_failed",
    title="ecosync: a recovery of the sync positions failed (run 1a2b3c4d)",
    stores=("NATUR",),
    happened=("store NATUR: environment variable ECOSYNC_TOKEN_NATUR is not set",),
    fix="Export ECOSYNC_TOKEN_NATUR, then materialize restored_sync_positions.",
    link="http://dagster.shop.example:3000/runs/1a2b3c4d",
)


def test_nothing_configured_means_no_channel_and_says_how_to_configure_one() -> None:
    settings = AlertSettings.from_env({})
    assert not settings.configured
    assert settings.describe().startswith("no alert channel is configured, so no alert is sent")
    assert "ECOSYNC_SLACK_CHANNEL" in settings.describe()
    assert Notifier.from_settings(settings, {}).channels == []


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ECOSYNC_SLACK_TOKEN": "xoxb-1"}, "ECOSYNC_SLACK_CHANNEL"),
        ({"ECOSYNC_SLACK_CHANNEL": "#a"}, "ECOSYNC_SLACK_TOKEN"),
        (
            {
                "ECOSYNC_SLACK_CHANNEL": "#a",
                "ECOSYNC_SLACK_TOKEN": "x",
                "ECOSYNC_SLACK_TOKEN_FILE": "/f",
            },
            "ECOSYNC_SLACK_TOKEN or ECOSYNC_SLACK_TOKEN_FILE, not both",
        ),
        ({"ECOSYNC_SMTP_HOST": "mail"}, "ECOSYNC_SMTP_TO"),
        ({"ECOSYNC_SMTP_TO": "a@b"}, "ECOSYNC_SMTP_HOST"),
        (
            {
                "ECOSYNC_SMTP_HOST": "m",
                "ECOSYNC_SMTP_TO": "a@b",
                "ECOSYNC_SMTP_FROM": "c@d",
                "ECOSYNC_SMTP_PORT": "smtp",
            },
            "ECOSYNC_SMTP_PORT",
        ),
        (
            {
                "ECOSYNC_SMTP_HOST": "m",
                "ECOSYNC_SMTP_TO": "a@b",
                "ECOSYNC_SMTP_FROM": "c@d",
                "ECOSYNC_SMTP_USER": "ops",
            },
            "ECOSYNC_SMTP_USER and ECOSYNC_SMTP_PASSWORD",
        ),
    ],
)
def test_a_half_configured_channel_is_refused_naming_the_variable(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        AlertSettings.from_env(environ)


@pytest.mark.parametrize(
    ("port", "security"), [("25", "none"), ("587", "starttls"), ("465", "ssl")]
)
def test_smtp_security_follows_the_port_unless_given(port: str, security: str) -> None:
    environ = {
        "ECOSYNC_SMTP_HOST": "mail.example",
        "ECOSYNC_SMTP_PORT": port,
        "ECOSYNC_SMTP_TO": "a@b.example",
        "ECOSYNC_SMTP_FROM": "c@d.example",
    }
    smtp = AlertSettings.from_env(environ).smtp
    assert smtp is not None and smtp.security == security
    assert AlertSettings.from_env({**environ, "ECOSYNC_SMTP_SECURITY": "none"}).smtp.security == (  # type: ignore[union-attr]
        "none"
    )


def test_an_alert_reaches_slack_and_every_recipient_by_e_mail(
    alert_env: dict[str, str], slack: SlackRecorder, smtp: SmtpRecorder, slack_token_file: Path
) -> None:
    settings = AlertSettings.from_env(alert_env)
    delivery = Notifier.from_settings(settings, alert_env).send(ALERT)
    assert delivery.sent == ("Slack", "e-mail") and not delivery.failed
    [post] = slack.messages()
    token = slack_token_file.read_text(encoding="utf-8").strip()
    assert post.authorization == f"Bearer {token}"
    assert post.body["channel"] == CHANNEL
    for text in (post.body["text"], smtp.received[0].body):
        assert "Stores: NATUR" in text
        assert "Fix: Export ECOSYNC_TOKEN_NATUR" in text
        assert "Open: http://dagster.shop.example:3000/runs/1a2b3c4d" in text
    [mail] = smtp.received
    assert mail.recipients == ["ops@shop.example", "oncall@shop.example"]
    assert mail.message["Subject"] == ALERT.title
    assert mail.message["From"] == "ecosync@shop.example"


def test_a_rotated_slack_token_file_is_used_by_the_next_message(
    alert_env: dict[str, str], slack: SlackRecorder, slack_token_file: Path
) -> None:
    notifier = Notifier.from_settings(AlertSettings.from_env(alert_env), alert_env)
    notifier.send(ALERT)
    rotated = f"xoxb-{make_token()}"
    slack_token_file.write_text(rotated, encoding="utf-8")
    notifier.send(ALERT)
    assert [p.authorization for p in slack.messages()][-1] == f"Bearer {rotated}"


def test_a_failing_channel_does_not_stop_the_other_and_never_shows_the_token(
    alert_env: dict[str, str],
    slack: SlackRecorder,
    smtp: SmtpRecorder,
    slack_token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.fail_with("not_in_channel")
    delivery = Notifier.from_settings(AlertSettings.from_env(alert_env), alert_env).send(ALERT)
    assert delivery.sent == ("e-mail",)
    [(channel, reason)] = delivery.failed.items()
    assert channel == f"Slack channel {CHANNEL}" and "not_in_channel" in reason
    assert len(smtp.received) == 1
    token = slack_token_file.read_text(encoding="utf-8").strip()
    assert leaked(caplog.text + delivery.summary(), token) == 0
    assert "NOT sent to Slack channel #ecosync-alerts" in caplog.text


def test_an_unreachable_smtp_server_is_reported_with_its_address(
    alert_env: dict[str, str], slack: SlackRecorder
) -> None:
    closed = SmtpRecorder()
    port = closed.port
    closed.server_close()  # nothing listens there any more
    environ = {**alert_env, "ECOSYNC_SMTP_PORT": str(port)}
    delivery = Notifier.from_settings(AlertSettings.from_env(environ), environ).send(ALERT)
    assert delivery.sent == ("Slack",)
    assert list(delivery.failed) == [f"e-mail via 127.0.0.1:{port}"]


def test_a_missing_slack_token_file_is_reported_naming_the_file(
    alert_env: dict[str, str], slack: SlackRecorder, slack_token_file: Path
) -> None:
    slack_token_file.unlink()
    delivery = Notifier.from_settings(AlertSettings.from_env(alert_env), alert_env).send(ALERT)
    assert slack.messages() == []
    assert f"the secret file {slack_token_file} cannot be read" in delivery.failed["Slack"]
