"""Fixtures of the alert tests: the local Slack and SMTP stand-ins, the variables that
point alerts at them, and (from the Dagster tests) two simulated stores and an instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from ecosync_pipeline_tests.test_adversarial.support import make_token
from ecosync_pipeline_tests.test_alerts.servers import SlackRecorder, SmtpRecorder
from ecosync_pipeline_tests.test_defs.conftest import env  # noqa: F401 (a fixture)

CHANNEL = "#ecosync-alerts"


@pytest.fixture(params=["in-memory", "sqlite-files"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DagsterInstance]:
    """An ephemeral instance, and one on SQLite files as `dagster dev` keeps them (each
    run's events in a file of its own: the sensors' reads must work there too)."""
    if request.param == "in-memory":
        with DagsterInstance.ephemeral() as ephemeral:
            yield ephemeral
    else:
        home = tmp_path / "dagster"
        home.mkdir()
        with DagsterInstance.local_temp(tempdir=str(home)) as local:
            yield local


@pytest.fixture
def slack() -> Iterator[SlackRecorder]:
    with SlackRecorder() as recorder:
        yield recorder


@pytest.fixture
def smtp() -> Iterator[SmtpRecorder]:
    with SmtpRecorder() as recorder:
        yield recorder


@pytest.fixture
def slack_token_file(tmp_path: Path) -> Path:
    path = tmp_path / "slack_token"
    path.write_text(f"xoxb-{make_token()}\n", encoding="utf-8")
    return path


@pytest.fixture
def alert_env(slack: SlackRecorder, smtp: SmtpRecorder, slack_token_file: Path) -> dict[str, str]:
    """The variables that send alerts to both stand-ins (the Slack token from a file)."""
    return {
        "ECOSYNC_SLACK_CHANNEL": CHANNEL,
        "ECOSYNC_SLACK_TOKEN_FILE": str(slack_token_file),
        "ECOSYNC_SLACK_BASE_URL": slack.base_url,
        "ECOSYNC_SMTP_HOST": "127.0.0.1",
        "ECOSYNC_SMTP_PORT": str(smtp.port),
        "ECOSYNC_SMTP_FROM": "ecosync@shop.example",
        "ECOSYNC_SMTP_TO": "ops@shop.example, oncall@shop.example",
        "ECOSYNC_DAGSTER_URL": "http://dagster.shop.example:3000",
    }
