"""Fixtures of the webhook tests: an orders database (PostgreSQL and SQLite), stores that
take webhooks, and the receiver served over real HTTP with its applier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Store
from ecosync_pipeline.storage import make_engine, migrate
from ecosync_pipeline.storage.schema import orders, store_state, stores, webhook_inbox
from ecosync_pipeline.webhooks.receiver import ReceiverSettings, create_receiver_app
from ecosync_pipeline.webhooks.signature import sign

SECRET = "whsec-0123456789-test-only"
SECRET_ENV = "ECOSYNC_TEST_WEBHOOK_SECRET"
PHONE = "0555123456"


def store(identifier: str = "NATUR", url: str = "http://127.0.0.1:9/NATUR") -> Store:
    """A store taking webhooks with the test secret."""
    return Store(
        identifier=identifier,
        name=f"{identifier} shop",
        base_url=url,
        token_env=f"ECOSYNC_TEST_TOKEN_{identifier}",
        extra={"webhook_secret_env": SECRET_ENV},
    )


def order(order_id: int, updated_at: str = "2026-11-20T10:00:00.000000Z", **fields: Any) -> Any:
    """An order body as EcoManager serves it (with a phone number, which must never leak)."""
    return {
        "id": order_id,
        "reference": f"NATUR{order_id}",
        "order_state_name": "En dispatch",
        "confirmation_state_name": "En attente",
        "full_name": "Amina Benali",
        "telephone": PHONE,
        "wilaya": "Alger",
        "commune": "Kouba",
        "items": [{"sku": "A1", "quantity": 1, "selling_price": "1500.00"}],
        "total": "1900.00",
        "created_at": "2026-11-20T09:00:00.000000Z",
        "updated_at": updated_at,
        **fields,
    }


def body_of(payload: Any) -> bytes:
    """The raw body EcoManager would send: {"data": order}, compact."""
    return json.dumps({"data": payload}, separators=(",", ":")).encode()


@dataclass
class Receiver:
    """The receiver under test: its URL, its database, an HTTP client."""

    url: str
    engine: Engine
    http: httpx.Client

    def post(
        self,
        body: bytes,
        *,
        event: str = "OrderCreated",
        store: str = "NATUR",
        signature: str | None = "sign",
        webhook_id: str = "7",
    ) -> httpx.Response:
        headers = {"X-Ecomanager-Event": event, "X-Ecomanager-Webhook-ID": webhook_id}
        if signature == "sign":
            signature = sign(SECRET, body)
        if signature is not None:
            headers["X-Ecomanager-Signature"] = signature
        return self.http.post(f"{self.url}/webhooks/{store}", content=body, headers=headers)


def _empty_database(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "sqlite":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("webhooks")
        return f"sqlite:///{folder}/ecosync.db"
    url = str(request.getfixturevalue("postgres_database"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def module_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An orders database per module and backend (PostgreSQL, then SQLite), migrated once."""
    eng = make_engine(_empty_database(request, request.param))
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def engine(module_engine: Engine) -> Engine:
    """The module's orders database, emptied (inbox, orders, store state, stores) for this test."""
    with module_engine.begin() as conn:
        for table in (webhook_inbox, orders, store_state, stores):
            conn.execute(table.delete())
    return module_engine


@pytest.fixture(scope="module")
def module_receiver(module_engine: Engine) -> Iterator[tuple[str, httpx.Client]]:
    stores = [store("NATUR"), store("PURNA")]
    app = create_receiver_app(
        module_engine,
        stores,
        settings=ReceiverSettings(max_body_bytes=16 * 1024, max_verified_bytes=64 * 1024),
        environ={SECRET_ENV: SECRET},
    )
    with ThreadedServer(app) as server, httpx.Client(timeout=10) as http:
        yield server.url, http


@pytest.fixture
def receiver(engine: Engine, module_receiver: tuple[str, httpx.Client]) -> Receiver:
    """The receiver for NATUR and PURNA over HTTP, on an empty database (nothing applies)."""
    url, http = module_receiver
    return Receiver(url, engine, http)
