"""The orders contract as served over HTTP: pages, gaps, deletions, new orders, statuses."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from ecosync_pipeline.ecomanager.models import parse_page
from ecosync_pipeline.lab.simulator import ORDER_STATES, Simulator, StoreSpec
from ecosync_pipeline.lab.simulator.orders import WILAYAS
from ecosync_pipeline_tests.test_simulator.helpers import fetch, http, page_ids


def test_pages_hold_ascending_ids_covering_the_store_exactly_once(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=95, gap_rate=0.05)])
    pages = [page_ids(simulator, "NATUR", p, 20) for p in range(1, 6)]
    assert [len(p) for p in pages] == [20, 20, 20, 20, 15]
    served = [i for p in pages for i in p]
    assert served == sorted(served) and len(set(served)) == 95
    assert served == list(simulator.ids("NATUR"))


def test_page_carries_laravel_links_and_meta(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=95)])
    body = fetch(simulator, "NATUR", 2, 20).json()
    assert body["meta"] == {
        "current_page": 2,
        "last_page": 5,
        "per_page": 20,
        "total": 95,
        "from": 21,
        "to": 40,
        "path": simulator.store_url("NATUR") + "/api/shop/v2/orders",
    }
    assert body["links"]["prev"].endswith("page=1&per_page=20")
    assert body["links"]["next"].endswith("page=3&per_page=20")
    assert body["links"]["last"].endswith("page=5&per_page=20")
    last = fetch(simulator, "NATUR", 5, 20).json()
    assert last["links"]["next"] is None and last["meta"]["to"] == 95


def test_per_page_defaults_to_20_serves_100_and_caps_larger_values(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=250)])
    assert len(page_ids(simulator, "NATUR", 1)) == 20
    assert len(page_ids(simulator, "NATUR", 1, 100)) == 100
    capped = fetch(simulator, "NATUR", 2, 500).json()
    assert len(capped["data"]) == 100 and capped["meta"]["per_page"] == 100
    assert capped["data"][0]["id"] == page_ids(simulator, "NATUR", 2, 100)[0]


def test_page_past_the_end_answers_200_with_empty_data(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=95)])
    response = fetch(simulator, "NATUR", 6, 20)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [] and body["meta"]["from"] is None
    assert body["meta"]["last_page"] == 5 and body["meta"]["current_page"] == 6
    assert page_ids(simulator, "NATUR", 40_000, 20) == []


def test_missing_or_bad_page_parameter_is_page_one(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=50)])
    first = page_ids(simulator, "NATUR", 1)
    assert page_ids(simulator, "NATUR", None) == first
    assert page_ids(simulator, "NATUR", 0) == first


def test_gaps_make_id_over_per_page_a_wrong_page(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=2000, gap_rate=0.03)])
    ids = list(simulator.ids("NATUR"))
    last = ids[-1]
    assert last > len(ids)  # some ids are missing
    assert len(set(range(1, last + 1)) - set(ids)) == last - len(ids)
    true_page = simulator.page_of("NATUR", last)
    assert true_page == 100 and last // 20 + 1 > true_page
    assert last in page_ids(simulator, "NATUR", true_page)
    missing = next(i for i in range(1, last) if i not in set(ids))
    assert simulator.page_of("NATUR", missing) is None


def test_offset_sparse_store_overshoots_id_estimate_by_far(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("PURNA", first_id=500_000, count=3000, stride=7, gap_rate=0.03)])
    last_page = simulator.last_page("PURNA")
    last_id = simulator.last_id("PURNA")
    assert last_page == 150 and simulator.first_id("PURNA") == 500_000
    assert last_id is not None and last_id // 20 - 10 > last_page + 20_000
    assert page_ids(simulator, "PURNA", last_id // 20 - 10) == []
    assert page_ids(simulator, "PURNA", last_page)[-1] == last_id


def test_deleting_an_order_shifts_later_orders_one_slot_towards_page_one(
    simulator: Simulator,
) -> None:
    simulator.configure([StoreSpec("NATUR", count=100, gap_rate=0.03)])
    page2, page3 = page_ids(simulator, "NATUR", 2), page_ids(simulator, "NATUR", 3)
    victim = page_ids(simulator, "NATUR", 1)[4]
    assert simulator.delete_orders("NATUR", [victim]) == [victim]
    assert page_ids(simulator, "NATUR", 2) == page2[1:] + page3[:1]
    assert page_ids(simulator, "NATUR", 3)[:19] == page3[1:]
    assert simulator.page_of("NATUR", page3[0]) == 2
    assert simulator.count("NATUR") == 99 and victim not in set(simulator.ids("NATUR"))


def test_new_orders_fill_the_last_page_then_open_new_pages(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=95)])
    before = page_ids(simulator, "NATUR", 5)
    new = simulator.add_orders("NATUR", 10)
    assert len(new) == 10 and new == sorted(new) and new[0] > before[-1]
    assert page_ids(simulator, "NATUR", 5) == before + new[:5]
    assert page_ids(simulator, "NATUR", 6) == new[5:]
    assert fetch(simulator, "NATUR", 6).json()["meta"]["last_page"] == 6
    assert simulator.last_id("NATUR") == new[-1]


def test_status_change_is_visible_when_the_page_is_read_again(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=60)])
    before = fetch(simulator, "NATUR", 2).json()["data"][3]
    new_state = "Retourné" if before["order_state_name"] != "Retourné" else "Livré"
    simulator.set_status("NATUR", before["id"], new_state)
    after = fetch(simulator, "NATUR", 2).json()["data"][3]
    assert after["id"] == before["id"]
    assert after["order_state_name"] == new_state
    assert after["updated_at"] > before["updated_at"]
    changed = simulator.change_random_statuses("NATUR", 3)
    assert len(changed) == 3
    for order_id in changed:
        order = simulator.order("NATUR", order_id)
        assert order is not None and order["order_state_name"] in ORDER_STATES


def test_orders_look_like_algerian_cash_on_delivery_orders(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("JWLR", count=300, gap_rate=0.03, catalog="jewelry")])
    data = [o for p in (1, 2, 3) for o in fetch(simulator, "JWLR", p, 100).json()["data"]]
    wilayas = {w[1]: set(w[4]) for w in WILAYAS}
    for order in data:
        assert order["reference"] == f"JWLR{order['id']}"
        assert order["order_state_name"] in ORDER_STATES
        assert order["confirmation_state_name"]
        assert re.fullmatch(r"0[567]\d{8}", order["telephone"])
        assert order["commune"] in wilayas[order["wilaya"]]
        assert len(order["full_name"].split()) >= 2
        assert 1 <= len(order["items"]) <= 3
        items_total = sum(Decimal(i["selling_price"]) * i["quantity"] for i in order["items"])
        assert Decimal(order["total_products"]) == items_total
        assert Decimal(order["total"]) > items_total
        assert set(order["items"][0]) == {"product_id", "sku", "title", "quantity", "selling_price"}
    created = [datetime.fromisoformat(o["created_at"].replace("Z", "+00:00")) for o in data]
    updated = [datetime.fromisoformat(o["updated_at"].replace("Z", "+00:00")) for o in data]
    assert created == sorted(created) and len(set(created)) == len(created)
    assert updated == sorted(updated)
    assert all(u >= c for c, u in zip(created, updated, strict=True))
    # Old orders are mostly delivered; the newest are still being handled.
    assert {o["order_state_name"] for o in data[:200]} <= {"Livré", "Retourné", "Annulé"}


def test_served_pages_parse_with_the_clients_model(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=45, gap_rate=0.1)])
    page = parse_page(fetch(simulator, "NATUR", 3).json(), store="NATUR", page=3, per_page=20)
    assert page.ids == page_ids(simulator, "NATUR", 3)
    assert page.last_page == 3 and page.total == 45 and page.is_end
    assert page.orders[0].total is not None and page.orders[0].created_at is not None


def test_unknown_store_answers_404(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=5)])
    simulator.configure([StoreSpec("OTHER", count=5)])
    response = fetch(simulator, "OTHER", 1)
    assert response.status_code == 200
    url = simulator.store_url("OTHER").replace("/OTHER", "/NATUR") + "/api/shop/v2/orders"
    assert http().get(url, headers={"Authorization": "Bearer x"}).status_code == 404
