"""webhook_secret_file: a store's webhook secret read from its file at every delivery.

The receiver runs over real HTTP on a migrated SQLite orders database; a delivery signed
with the file's secret is stored, a rotated file takes effect at the next delivery, and a
missing file answers 503 (EcoManager retries) with a log line naming the store and file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.webhooks.config import webhook_secret, webhook_stores
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.signature import sign
from ecosync_pipeline_tests.test_adversarial.support import leaked, make_token
from ecosync_pipeline_tests.test_webhooks.conftest import body_of, order


def file_store(path: Path, identifier: str = "NATUR") -> Store:
    return Store(
        identifier=identifier,
        name=f"{identifier} shop",
        base_url=f"http://127.0.0.1:9/{identifier}",
        token_env=f"ECOSYNC_TEST_TOKEN_{identifier}",
        extra={"webhook_secret_file": str(path)},
    )


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "natur_webhook_secret"
    path.write_text(make_token() + "\n", encoding="utf-8")
    return path


@pytest.fixture
def receiver_url(tmp_path: Path, secret_file: Path) -> Iterator[str]:
    engine = make_engine(f"sqlite:///{tmp_path}/ecosync.db")
    migrate(engine)
    app = create_receiver_app(engine, [file_store(secret_file)], environ={})
    try:
        with ThreadedServer(app) as server:
            yield server.url
    finally:
        engine.dispose()


def deliver(url: str, secret: str, order_id: int) -> httpx.Response:
    body = body_of(order(order_id))
    headers = {
        "X-Ecomanager-Event": "OrderCreated",
        "X-Ecomanager-Webhook-ID": "7",
        "X-Ecomanager-Signature": sign(secret, body),
    }
    return httpx.post(f"{url}/webhooks/NATUR", content=body, headers=headers, timeout=10)


def test_a_rotated_webhook_secret_file_verifies_the_next_delivery(
    receiver_url: str, secret_file: Path
) -> None:
    old = secret_file.read_text(encoding="utf-8").strip()
    assert deliver(receiver_url, old, 1).status_code == 200
    new = make_token()
    secret_file.write_text(new, encoding="utf-8")
    assert deliver(receiver_url, old, 2).status_code == 401
    assert deliver(receiver_url, new, 3).status_code == 200


def test_a_missing_webhook_secret_file_answers_503_and_names_the_store_and_file(
    receiver_url: str, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secret_file.read_text(encoding="utf-8").strip()
    secret_file.unlink()
    answer = deliver(receiver_url, secret, 1)
    assert answer.status_code == 503  # EcoManager retries; the webhook stays enabled
    assert f"store NATUR: webhook_secret_file {secret_file} cannot be read" in caplog.text
    assert leaked(caplog.text + answer.text, secret) == 0


def test_a_store_with_a_webhook_secret_file_takes_webhooks(secret_file: Path) -> None:
    store = file_store(secret_file)
    assert webhook_stores([store]) == [store]
    assert webhook_secret(store, {}) == secret_file.read_text(encoding="utf-8").strip()


def test_a_webhook_secret_named_twice_is_refused(secret_file: Path) -> None:
    store = Store(
        identifier="NATUR",
        name="Natura",
        base_url="http://127.0.0.1:9/NATUR",
        token_env="ECOSYNC_TEST_TOKEN_NATUR",
        extra={"webhook_secret_file": str(secret_file), "webhook_secret_env": "SECRET"},
    )
    with pytest.raises(ConfigError, match="give webhook_secret_env or webhook_secret_file"):
        webhook_stores([store])
