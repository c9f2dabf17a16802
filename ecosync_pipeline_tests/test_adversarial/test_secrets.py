"""No 8 consecutive characters of a token, and no URL password, reach any text a user sees.

A server (or proxy) echoes the Authorization header back: in a plain body, an HTML error
page, a redirect's Location, a Retry-After value, an order id. The client's errors,
their chained causes, its retry logs, the Dagster failure built from them and the
output of `ecosync sync` are all checked with an independent measure (the longest run of
the token's characters), not with the redactor under test.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import get_args

import httpx
import pytest

from ecosync_pipeline.config import Store, parse_stores
from ecosync_pipeline.defs.failures import as_failure
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ApiError, ConfigError
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.adversarial.server import ORDERS_PATH, Echo
from ecosync_pipeline_tests.test_adversarial.support import (
    CliWorld,
    dialect,
    leaked,
    longest_run,
    make_token,
)

PASSWORD = "s3cretPassw0rdXYZ"


def echoing_client(server: AdversarialServer, store: AdversarialStore) -> EcoManagerClient:
    config = Store(store.identifier, "Echo", server.store_url(store.identifier), "ECHO_TOKEN")
    return EcoManagerClient(
        config, store.token, max_retries=2, rate_limiter=RateLimiter(1e9), sleep=lambda s: None
    )


@pytest.mark.parametrize("echo", get_args(Echo))
def test_token_echoed_by_the_server_never_reaches_errors_causes_logs_or_failures(
    echo: Echo,
    adversarial: AdversarialServer,
    caplog: pytest.LogCaptureFixture,
    case_row: Callable[..., None],
) -> None:
    store = AdversarialStore("ECHO", make_token(), [1, 2], echo=echo)
    adversarial.serve(store)
    with echoing_client(adversarial, store) as client, pytest.raises(ApiError) as raised:
        client.fetch_page(1)
    error = raised.value
    assert (error.store, error.page) == ("ECHO", 1)
    failure = as_failure(error, "ECHO")
    texts = [
        str(error),
        "".join(traceback.format_exception(error)),
        caplog.text,
        str(failure.description),
        str(failure.metadata),
    ]
    # The server did echo it whole: the measure finds it in the raw answer.
    raw = httpx.get(
        adversarial.store_url("ECHO") + ORDERS_PATH,
        headers={"Authorization": f"Bearer {store.token}"},
    )
    assert longest_run(raw.text + str(raw.headers), store.token) == 80
    shown = max(leaked(text, store.token) for text in texts)
    assert shown == 0, texts
    assert error.retryable is (echo == "retry_after")
    if echo == "retry_after":  # the other echoes are tabled by the `ecosync sync` test
        case_row(
            "token echoed in Retry-After (client, 3 attempts)",
            missing=None,
            blocked=None,
            leaked=shown,
            peak_mb=None,
            message=f"{type(error).__name__}: {error}",
        )


@pytest.mark.parametrize("echo", ["body", "html", "location", "id"])
def test_sync_command_output_holds_no_run_of_an_echoed_token(
    echo: Echo,
    cli_world: CliWorld,
    caplog: pytest.LogCaptureFixture,
    case_row: Callable[..., None],
    database_url: str,
) -> None:
    store = AdversarialStore("ECHO", make_token(), [1, 2], echo=echo)
    cli_world.configure(store)
    result = cli_world.sync()
    assert result.exit_code == 1
    assert "ECHO" in result.stderr
    shown = leaked(result.output + caplog.text, store.token)
    assert shown == 0, result.output
    # The next good run, once the server stops echoing, stores every order.
    store.echo = None
    again = cli_world.sync()
    assert again.exit_code == 0, again.output
    lost = len({1, 2} - set(cli_world.stored("ECHO")))
    assert lost == 0
    reason = next(line for line in result.stderr.splitlines() if line.startswith("ECHO "))
    case_row(
        f"token echoed in {echo} (ecosync sync, {dialect(database_url)})",
        missing=lost,
        blocked=again.exit_code != 0,
        leaked=shown,
        peak_mb=None,
        message=" ".join(reason.split()[1:]),
    )


def test_base_url_with_a_password_is_refused_with_its_line_and_never_shown(
    case_row: Callable[..., None],
) -> None:
    text = (
        "stores:\n"
        "  - identifier: GOOD\n    name: Good\n    base_url: https://good.example\n"
        "    token_env: TOKEN_GOOD\n"
        "  - identifier: CREDS\n    name: Creds\n"
        f"    base_url: https://shop:{PASSWORD}@creds.example\n"
        "    token_env: TOKEN_CREDS\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_stores(text, "stores.yaml")
    message = str(raised.value)
    assert "stores.yaml, line 6" in message and "store CREDS" in message, message
    assert "user info" in message
    shown = leaked("".join(traceback.format_exception(raised.value)), PASSWORD)
    assert shown == 0 and PASSWORD[:6] not in message
    case_row(
        "base_url with user:password@",
        missing=None,
        blocked=None,
        leaked=shown,
        peak_mb=None,
        message=f"ConfigError: {message}",
    )


def test_client_refuses_a_base_url_with_a_password_without_showing_it() -> None:
    store = Store("CREDS", "Creds", f"https://shop:{PASSWORD}@creds.example", "TOKEN_CREDS")
    with pytest.raises(ConfigError) as raised:
        EcoManagerClient(store, make_token())
    assert "store CREDS" in str(raised.value)
    assert leaked("".join(traceback.format_exception(raised.value)), PASSWORD) == 0
