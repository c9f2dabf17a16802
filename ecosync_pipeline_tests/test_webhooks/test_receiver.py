"""The receiver over real HTTP: what it accepts, what it refuses, and what it never logs.

DESIGN invariant 13: a delivery is accepted only with a valid signature over its raw
body, stored before it is answered, and every authentic one is answered 200, even one
that cannot be applied (kept refused, with its reason). Each test runs on PostgreSQL and
on SQLite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.storage import advisory_key, make_engine
from ecosync_pipeline.storage.schema import webhook_inbox
from ecosync_pipeline.webhooks.apply import APPLY_LOCK, apply_pending
from ecosync_pipeline.webhooks.health import delivery_health
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.signature import sign
from ecosync_pipeline_tests.test_webhooks.conftest import (
    PHONE,
    SECRET,
    SECRET_ENV,
    Receiver,
    body_of,
    order,
    store,
)


def inbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(webhook_inbox)).scalar_one())


def inbox_rows(engine: Engine) -> list[dict[str, Any]]:
    c = webhook_inbox.c
    stmt = select(c.order_id, c.event, c.outcome, c.reason, c.applied_at, c.body, c.body_sha256)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt.order_by(c.id)).mappings()]


def assert_kept_refused(receiver: Receiver, response: httpx.Response, reason: str) -> None:
    """Answered 200, stored refused with ``reason``, never applied, counted in the check."""
    assert response.status_code == 200, response.text
    assert reason in response.json()["refused"]
    (row,) = inbox_rows(receiver.engine)
    assert row["outcome"] == "refused" and reason in row["reason"]
    assert row["applied_at"] is not None  # marked: nothing left pending to apply
    assert apply_pending(receiver.engine, {}).total == 0
    health = delivery_health(receiver.engine, "NATUR", datetime.now(timezone.utc))
    assert health.refused == 1 and not health.ok
    assert "could not be applied" in health.describe(datetime.now(timezone.utc))


def test_signed_delivery_is_stored_before_the_200_and_a_retry_of_it_is_stored_once(
    receiver: Receiver,
) -> None:
    body = body_of(order(101))
    first = receiver.post(body)
    assert first.status_code == 200 and first.json() == {"stored": True}
    # Stored (committed) by the time the answer came: another connection sees it.
    assert inbox_count(receiver.engine) == 1
    again = receiver.post(body)  # EcoManager's retry: same webhook id, event and body
    assert again.status_code == 200 and again.json() == {"stored": False}
    assert inbox_count(receiver.engine) == 1
    # The same order under another event is another delivery.
    assert receiver.post(body, event="OrderStatusChanged").json() == {"stored": True}
    assert inbox_count(receiver.engine) == 2


def test_forged_signature_is_refused_with_401_and_nothing_stored(receiver: Receiver) -> None:
    body = body_of(order(102))
    forged = receiver.post(body, signature=sign("not-the-secret", body))
    assert forged.status_code == 401
    assert receiver.post(body, signature="zz" * 32).status_code == 401
    assert receiver.post(body, signature="").status_code == 401
    assert inbox_count(receiver.engine) == 0


def test_missing_signature_is_refused_with_401(receiver: Receiver) -> None:
    response = receiver.post(body_of(order(103)), signature=None)
    assert response.status_code == 401 and response.json()["message"] == "no signature"
    assert inbox_count(receiver.engine) == 0


def test_replayed_signature_on_another_body_is_refused(receiver: Receiver) -> None:
    captured = body_of(order(104))
    signature = sign(SECRET, captured)
    assert receiver.post(captured, signature=signature).status_code == 200
    tampered = body_of(order(104, order_state_name="Annulé"))
    assert receiver.post(tampered, signature=signature).status_code == 401
    other_store = receiver.post(captured, signature=signature, store="PURNA")
    assert other_store.status_code == 200  # same secret here; a real shop has one per store
    assert inbox_count(receiver.engine) == 2


def test_body_reserialized_with_other_whitespace_fails_verification(receiver: Receiver) -> None:
    original = body_of(order(105))
    signature = sign(SECRET, original)
    reserialized = json.dumps(json.loads(original), indent=1).encode()
    assert json.loads(reserialized) == json.loads(original)
    assert receiver.post(reserialized, signature=signature).status_code == 401
    spaced = json.dumps(json.loads(original)).encode()  # ", " and ": " separators
    assert receiver.post(spaced, signature=signature).status_code == 401
    assert receiver.post(original, signature=signature.upper()).status_code == 200
    assert inbox_count(receiver.engine) == 1


def test_unknown_store_is_refused_with_404(receiver: Receiver) -> None:
    body = body_of(order(106))
    assert receiver.post(body, store="NOSUCH").status_code == 404
    assert receiver.post(body, store="NA%2FTUR").status_code == 404
    assert receiver.http.get(f"{receiver.url}/webhooks/NOSUCH").status_code == 404
    assert inbox_count(receiver.engine) == 0


def test_activation_get_is_answered_for_a_store_taking_webhooks(receiver: Receiver) -> None:
    response = receiver.http.get(f"{receiver.url}/webhooks/NATUR")
    assert response.status_code == 200 and response.json()["ready"] is True


def test_signed_body_over_the_cap_is_kept_refused_with_200_and_its_digest(
    receiver: Receiver,
) -> None:
    big = body_of(order(107, note="x" * 20_000))  # the test receiver's cap is 16 KiB
    assert_kept_refused(receiver, receiver.post(big), "over the 16384-byte cap")
    (row,) = inbox_rows(receiver.engine)
    assert row["body"] == b"" and row["body_sha256"] == hashlib.sha256(big).hexdigest()
    assert receiver.post(big).json() == {"stored": False, "refused": row["reason"]}  # once


def test_forged_body_over_the_cap_is_verified_while_streamed_and_refused_401(
    receiver: Receiver,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    streamed = receiver.http.post(
        f"{receiver.url}/webhooks/NATUR",
        content=chunks(),
        headers={"X-Ecomanager-Event": "OrderCreated", "X-Ecomanager-Signature": "00"},
    )
    assert streamed.status_code == 401
    assert inbox_count(receiver.engine) == 0


def test_body_past_the_verification_limit_is_not_read_and_answered_413(
    receiver: Receiver,
) -> None:
    huge = b"x" * (70 * 1024)  # the test receiver verifies up to 64 KiB
    assert receiver.post(huge).status_code == 413  # declared length, refused at once

    def chunks() -> Iterator[bytes]:
        for _ in range(70):
            yield b"x" * 1024

    streamed = receiver.http.post(
        f"{receiver.url}/webhooks/NATUR",
        content=chunks(),
        headers={
            "X-Ecomanager-Event": "OrderCreated",
            "X-Ecomanager-Signature": sign(SECRET, huge),
        },
    )
    assert streamed.status_code == 413
    assert inbox_count(receiver.engine) == 0


def test_signed_delivery_whose_id_is_beyond_bigint_is_kept_refused_with_200(
    receiver: Receiver,
) -> None:
    body = body_of(order(2**63))
    assert_kept_refused(receiver, receiver.post(body), "does not fit the orders table")
    (row,) = inbox_rows(receiver.engine)
    assert row["order_id"] == 0 and row["body"] == body  # kept as signed, for the record


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an order"),
        (b'{"data": {"id": "12"}}', "not an order"),
        (b'{"id": 0}', "not an order"),
        (b'{"data": {"ref": 1}}', "not an order"),
    ],
)
def test_signed_body_that_is_not_an_order_is_kept_refused_with_200(
    receiver: Receiver, body: bytes, reason: str
) -> None:
    assert_kept_refused(receiver, receiver.post(body), reason)


def test_signed_delivery_of_an_unknown_event_is_kept_refused_with_200(receiver: Receiver) -> None:
    response = receiver.post(body_of(order(108)), event="OrderExploded")
    assert_kept_refused(receiver, response, "unknown event")
    assert inbox_rows(receiver.engine)[0]["order_id"] == 108


def test_bare_order_body_is_accepted_as_well_as_the_data_envelope(receiver: Receiver) -> None:
    bare = json.dumps(order(109)).encode()
    assert receiver.post(bare).status_code == 200


def test_database_down_answers_503_so_ecomanager_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    down = make_engine("postgresql://postgres@127.0.0.1:1/nothing")
    app = create_receiver_app(down, [store("NATUR")])
    body = body_of(order(110))
    with ThreadedServer(app) as server:
        response = httpx.post(
            f"{server.url}/webhooks/NATUR",
            content=body,
            headers={
                "X-Ecomanager-Signature": sign(SECRET, body),
                "X-Ecomanager-Event": "OrderCreated",
            },
        )
    assert response.status_code == 503


def test_secret_and_phone_numbers_never_reach_logs_or_answers(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = body_of(order(111))
    answers = [
        receiver.post(body),
        receiver.post(body),
        receiver.post(body, signature=sign("wrong", body)),
        receiver.post(body, signature=None),
        receiver.post(body, store="NOSUCH"),
        receiver.post(body_of(order(112, note="y" * 20_000))),
        receiver.post(body.replace(b'"id":111', b'"id":"x"')),
    ]
    assert [a.status_code for a in answers] == [200, 200, 401, 401, 404, 200, 200]
    text = caplog.text + "".join(a.text for a in answers)
    assert "store NATUR: OrderCreated of order 111" in caplog.text  # it does log, safely
    assert SECRET not in text
    assert PHONE not in text and "Benali" not in text


@pytest.mark.parametrize("module_engine", ["postgresql"], indirect=True)
def test_answers_at_once_while_applying_is_held_up(receiver: Receiver) -> None:
    """Applying waits on the appliers' lock (held here); storing and answering do not."""
    with receiver.engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": advisory_key(APPLY_LOCK)})
        applying = threading.Thread(target=apply_pending, args=(receiver.engine, {}))
        applying.start()
        started = time.monotonic()
        answer = receiver.post(body_of(order(120)))
        assert answer.status_code == 200 and time.monotonic() - started < 2
        assert applying.is_alive()  # still waiting to apply
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(APPLY_LOCK)})
        holder.commit()
    applying.join(timeout=10)
    assert not applying.is_alive()
