"""The other ways of reading orders: newest first by cursor or by page, and one order."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from ecosync_pipeline.lab.simulator import ORDERS_PATH, Simulator, StoreSpec
from ecosync_pipeline.lab.simulator.reading import Cursor
from ecosync_pipeline_tests.test_simulator.helpers import http


@pytest.fixture
def natur(simulator: Simulator) -> Simulator:
    """NATUR with 250 orders, 3% gaps, and JWLR with 30."""
    return simulator.configure(
        [StoreSpec("NATUR", count=250, gap_rate=0.03), StoreSpec("JWLR", count=30)]
    )


def get(sim: Simulator, store: str, **params: Any) -> httpx.Response:
    """GET the orders endpoint of ``store`` with these query parameters."""
    headers = {"Authorization": f"Bearer {sim.token(store)}", "Accept": "application/json"}
    return http().get(sim.store_url(store) + ORDERS_PATH, params=params, headers=headers)


def get_json(sim: Simulator, store: str, **params: Any) -> dict[str, Any]:
    response = get(sim, store, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids_of(body: dict[str, Any]) -> list[int]:
    return [order["id"] for order in body["data"]]


def decoded(cursor: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return value


def test_cursor_walk_reads_every_id_newest_first_once(natur: Simulator) -> None:
    seen: list[int] = []
    body = get_json(natur, "NATUR", per_page=100, sort_direction="desc")
    pages = 1
    while True:
        assert "total" not in body["meta"] and "last_page" not in body["meta"]
        seen += ids_of(body)
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            assert body["links"]["next"] is None
            break
        assert decoded(cursor) == {"id": seen[-1], "_pointsToNextItems": True}
        assert parse_qs(urlparse(body["links"]["next"]).query)["cursor"] == [cursor]
        body = get_json(natur, "NATUR", per_page=100, sort_direction="desc", cursor=cursor)
        pages += 1
    assert seen == sorted(natur.ids("NATUR"), reverse=True)
    assert pages == 3  # 250 orders at 100 a page: the last page says there is no next


def test_first_cursor_page_has_no_prev_cursor_and_the_second_leads_back(natur: Simulator) -> None:
    first = get_json(natur, "NATUR", per_page=20, sort_direction="desc")
    assert first["meta"]["prev_cursor"] is None and first["links"]["prev"] is None
    second = get_json(
        natur, "NATUR", per_page=20, sort_direction="desc", cursor=first["meta"]["next_cursor"]
    )
    prev = second["meta"]["prev_cursor"]
    assert decoded(prev) == {"id": ids_of(second)[0], "_pointsToNextItems": False}
    back = get_json(natur, "NATUR", per_page=20, sort_direction="desc", cursor=prev)
    assert ids_of(back) == ids_of(first)
    # Back on the newest page: nothing newer, so no prev cursor, and next leads on again.
    assert back["meta"]["prev_cursor"] is None
    assert decoded(back["meta"]["next_cursor"])["id"] == ids_of(first)[-1]


def test_cursor_reader_skips_nothing_when_orders_are_deleted_and_added_between_pages(
    natur: Simulator,
) -> None:
    first = get_json(natur, "NATUR", per_page=50, sort_direction="desc")
    boundary = ids_of(first)[-1]
    # Old orders deleted (later ones shift towards page 1) and new ones arrive meanwhile.
    deleted = natur.delete_random("NATUR", 10, max_id=boundary - 1)
    natur.add_orders("NATUR", 7)
    rest: list[int] = []
    cursor = first["meta"]["next_cursor"]
    while cursor is not None:
        body = get_json(natur, "NATUR", per_page=50, sort_direction="desc", cursor=cursor)
        rest += ids_of(body)
        cursor = body["meta"]["next_cursor"]
    expected = [i for i in sorted(natur.ids("NATUR"), reverse=True) if i < boundary]
    assert rest == expected and not set(deleted) & set(rest)


def test_ascending_cursor_reads_oldest_first(natur: Simulator) -> None:
    body = get_json(natur, "JWLR", per_page=25, sort_direction="asc")
    again = get_json(
        natur, "JWLR", per_page=25, sort_direction="asc", cursor=body["meta"]["next_cursor"]
    )
    assert ids_of(body) + ids_of(again) == list(natur.ids("JWLR"))
    assert again["meta"]["next_cursor"] is None


def test_cursor_that_does_not_decode_serves_the_first_page_as_laravel_does(
    natur: Simulator,
) -> None:
    newest = ids_of(get_json(natur, "NATUR", per_page=10, sort_direction="desc"))
    for junk in ("!!!", base64.urlsafe_b64encode(b'{"page": 2}').decode(), "W10"):
        body = get_json(natur, "NATUR", per_page=10, sort_direction="desc", cursor=junk)
        assert ids_of(body) == newest


def test_cursor_round_trips_laravel_encoding() -> None:
    text = Cursor(905448, True).encode()
    assert "=" not in text
    assert decoded(text) == {"id": 905448, "_pointsToNextItems": True}
    assert Cursor.decode(text) == Cursor(905448, True)


def test_sort_minus_id_serves_newest_first_with_page_numbers(natur: Simulator) -> None:
    everything = sorted(natur.ids("NATUR"), reverse=True)
    first = get_json(natur, "NATUR", page=1, per_page=20, sort="-id")
    assert ids_of(first) == everything[:20]
    assert first["meta"]["total"] == 250 and first["meta"]["last_page"] == 13
    assert "sort=-id" in first["links"]["next"]
    last = get_json(natur, "NATUR", page=13, per_page=20, sort="-id")
    assert ids_of(last) == everything[240:]
    assert get_json(natur, "NATUR", page=14, per_page=20, sort="-id")["data"] == []


def test_created_at_from_keeps_orders_created_since_that_day(natur: Simulator) -> None:
    orders = {i: natur.order("NATUR", i) for i in natur.ids("NATUR")}
    assert all(o is not None for o in orders.values())
    middle = sorted(orders)[125]
    day = str(orders[middle]["created_at"])[:10]  # type: ignore[index]
    expected = sorted(
        (i for i, o in orders.items() if str(o["created_at"])[:10] >= day),  # type: ignore[index]
        reverse=True,
    )
    body = get_json(natur, "NATUR", page=1, per_page=100, sort="-id", created_at_from=day)
    assert 0 < body["meta"]["total"] == len(expected) < 250
    assert ids_of(body) == expected[:100]


def test_bad_sort_direction_or_date_is_refused_with_422(natur: Simulator) -> None:
    assert get(natur, "NATUR", sort_direction="sideways").status_code == 422
    response = get(natur, "NATUR", sort="-id", created_at_from="yesterday")
    assert response.status_code == 422 and "created at from" in response.json()["message"]
    assert natur.stats("NATUR")["invalid"] == 2


def test_store_without_cursor_mode_ignores_cursor_parameters(natur: Simulator) -> None:
    natur.set_faults("NATUR", cursor_mode=False)
    body = get_json(natur, "NATUR", per_page=100, sort_direction="desc")
    assert ids_of(body) == list(natur.ids("NATUR"))[:100]  # ascending page 1
    assert body["meta"]["total"] == 250 and "next_cursor" not in body["meta"]
    # Other stores keep it.
    assert "next_cursor" in get_json(natur, "JWLR", sort_direction="desc")["meta"]


def test_store_without_sort_mode_ignores_sort(natur: Simulator) -> None:
    natur.set_faults("NATUR", sort_mode=False)
    body = get_json(natur, "NATUR", page=1, per_page=20, sort="-id", created_at_from="2030-01-01")
    assert ids_of(body) == list(natur.ids("NATUR"))[:20]


def test_request_log_records_how_the_store_was_read(natur: Simulator) -> None:
    get_json(natur, "NATUR", sort_direction="desc")
    get_json(natur, "NATUR", sort="-id")
    get_json(natur, "NATUR", page=2)
    assert [r.mode for r in natur.requests("NATUR")] == ["cursor", "pages_desc", "pages"]


def order_url(sim: Simulator, store: str, order_id: int) -> str:
    return f"{sim.store_url(store)}{ORDERS_PATH}/{order_id}"


def test_single_order_endpoint_serves_the_order_as_pages_do(natur: Simulator) -> None:
    headers = {"Authorization": f"Bearer {natur.token('NATUR')}"}
    page = get_json(natur, "NATUR", page=3)
    wanted = page["data"][4]
    response = http().get(order_url(natur, "NATUR", wanted["id"]), headers=headers)
    assert response.status_code == 200 and response.json() == {"data": wanted}
    natur.delete_orders("NATUR", [wanted["id"]])
    gone = http().get(order_url(natur, "NATUR", wanted["id"]), headers=headers)
    assert gone.status_code == 404 and str(wanted["id"]) in gone.json()["message"]
    assert [r.mode for r in natur.requests("NATUR")][-2:] == ["order", "order"]
    assert natur.stats("NATUR")["not_found"] == 1


def test_single_order_endpoint_checks_the_token_and_obeys_fault_switches(natur: Simulator) -> None:
    order_id = next(natur.ids("NATUR"))
    assert http().get(order_url(natur, "NATUR", order_id)).status_code == 401
    natur.fail_next("NATUR", 1, "unavailable")
    headers = {"Authorization": f"Bearer {natur.token('NATUR')}"}
    assert http().get(order_url(natur, "NATUR", order_id), headers=headers).status_code == 503
    natur.fail_next("NATUR", 1, "malformed_id")
    broken = http().get(order_url(natur, "NATUR", order_id), headers=headers).json()
    assert "id" not in broken["data"]
