"""No secret in a request log: httpx logs every URL it requests, and a cursor there is the
server's base64 (which may carry anything, the token's context included)."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace

import pytest

from ecosync_pipeline.redact import MASK, loggable_url
from ecosync_pipeline_tests.helpers import World


def test_a_cursor_read_logs_its_requests_without_their_cursors(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.stores[0] = replace(world.stores[0], read_mode="cursor")
    caplog.set_level(logging.DEBUG)
    # httpx's own logger too: the `ecosync` command quiets it, and it may have run before.
    caplog.set_level(logging.DEBUG, logger="httpx")
    with world.open() as rt:
        store = rt.store("SHOP")
        with rt.client(store) as client:
            first = client.fetch_newest()
            assert first.next_cursor is not None
            second = client.fetch_newest(first.next_cursor, number=2)
        rt.sync("SHOP")  # the whole cursor-mode sync, too
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("sort_direction=desc" in line for line in requests)
    assert any(f"cursor={MASK}" in line for line in requests)
    for cursor in (first.next_cursor, second.next_cursor):
        assert cursor is not None
        assert cursor not in caplog.text
        assert cursor.rstrip("=") not in caplog.text


def test_loggable_urls_keep_page_numbers_and_blank_the_rest() -> None:
    token = "T" * 80
    cursor = base64.b64encode(json.dumps({"id": 905448, "token": token}).encode()).decode()
    url = (
        f"https://user:{token}@natur.example/api/shop/v2/orders"
        f"?page=3&per_page=100&sort_direction=desc&cursor={cursor}"
    )
    shown = loggable_url(url)
    assert token not in shown and cursor not in shown and "user" not in shown
    assert shown == (
        "https://natur.example/api/shop/v2/orders"
        f"?page=3&per_page=100&sort_direction=desc&cursor={MASK}"
    )
