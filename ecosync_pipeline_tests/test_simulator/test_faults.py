"""Every switch a test or a benchmark can turn on, per store, scripted or as a rate."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ecosync_pipeline.ecomanager.models import parse_page
from ecosync_pipeline.errors import MalformedPage
from ecosync_pipeline.lab.simulator import (
    Change,
    Simulator,
    SimulatorError,
    StoreSpec,
    check_authorization,
    demo_token,
)
from ecosync_pipeline_tests.test_simulator.helpers import fetch, http


@pytest.fixture
def natur(simulator: Simulator) -> Simulator:
    """The session simulator with one small store, NATUR (60 orders, 3% gaps)."""
    return simulator.configure(
        [StoreSpec("NATUR", count=60, gap_rate=0.03), StoreSpec("JWLR", count=40)]
    )


def _direct(sim: Simulator, store: str = "NATUR", page: int = 1) -> str:
    """Outcome of one request answered in-process (fast, for rate statistics)."""
    return sim.handle_orders(
        store, page=str(page), per_page="20", authorization=f"Bearer {sim.token(store)}", path="/x"
    ).outcome


def test_latency_delays_every_answer(natur: Simulator) -> None:
    # Half a second: far above what a local fetch costs even on a busy machine.
    natur.set_faults("NATUR", latency_ms=500)
    started = time.perf_counter()
    assert fetch(natur, "NATUR").status_code == 200
    assert time.perf_counter() - started >= 0.49
    started = time.perf_counter()
    assert fetch(natur, "JWLR").status_code == 200
    assert time.perf_counter() - started < 0.49  # other stores are untouched


def test_rate_limit_sends_retry_after_with_configured_seconds(natur: Simulator) -> None:
    natur.set_faults("NATUR", rate_limit_rate=1.0, retry_after=7)
    response = fetch(natur, "NATUR")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert natur.request_count("NATUR", "rate_limited") == 1


def test_rate_limit_without_retry_after_sends_no_header(natur: Simulator) -> None:
    natur.set_faults("NATUR", rate_limit_rate=1.0, retry_after=None)
    response = fetch(natur, "NATUR")
    assert response.status_code == 429 and "Retry-After" not in response.headers
    natur.clear_faults("NATUR")
    natur.fail_next("NATUR", 1, "rate_limited_no_retry_after")
    response = fetch(natur, "NATUR")
    assert response.status_code == 429 and "Retry-After" not in response.headers


def test_unavailable_rate_one_answers_503(natur: Simulator) -> None:
    natur.set_faults("NATUR", unavailable_rate=1.0)
    assert fetch(natur, "NATUR").status_code == 503
    assert natur.stats("NATUR")["unavailable"] == 1


def test_next_five_requests_fail_with_503_then_the_store_answers(natur: Simulator) -> None:
    natur.fail_next("NATUR", 5, "unavailable")
    statuses = [fetch(natur, "NATUR").status_code for _ in range(6)]
    assert statuses == [503] * 5 + [200]
    assert natur.stats("NATUR") == {
        "total": 6,
        "ok": 1,
        "unavailable": 5,
        "unauthorized": 0,
        "forbidden": 0,
        "rate_limited": 0,
        "server_error": 0,
        "timeout": 0,
        "malformed": 0,
        "not_found": 0,
        "invalid": 0,
    }


def test_scripted_failures_queue_in_order_and_override_rates(natur: Simulator) -> None:
    natur.set_faults("NATUR", unavailable_rate=1.0)
    natur.fail_next("NATUR", 2, "rate_limited")
    natur.fail_next("NATUR", 1, "server_error")
    statuses = [fetch(natur, "NATUR").status_code for _ in range(4)]
    assert statuses == [429, 429, 500, 503]


def test_timeout_sleeps_longer_than_the_client_waits(natur: Simulator) -> None:
    natur.set_faults("NATUR", timeout_rate=1.0, timeout_seconds=3.0)
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        fetch(natur, "NATUR", timeout=0.3)
    assert time.perf_counter() - started < 2.0
    natur.clear_faults("NATUR")
    natur.fail_next("NATUR", 1, "timeout")
    natur.set_faults("NATUR", timeout_seconds=3.0)
    with pytest.raises(httpx.ReadTimeout):
        fetch(natur, "NATUR", timeout=0.3)
    assert fetch(natur, "NATUR", timeout=2).status_code == 200
    assert natur.request_count("NATUR", "timeout") == 2


def test_timed_out_request_is_answered_to_a_patient_client(natur: Simulator) -> None:
    natur.set_faults("NATUR", timeout_rate=1.0, timeout_seconds=0.2)
    started = time.perf_counter()
    response = fetch(natur, "NATUR", timeout=5)
    assert response.status_code == 200 and time.perf_counter() - started >= 0.19


def test_malformed_page_with_data_not_a_list_is_refused_by_the_client_model(
    natur: Simulator,
) -> None:
    natur.set_faults("NATUR", malformed_rate=1.0, malformed_kind="data_not_list")
    body = fetch(natur, "NATUR").json()
    assert isinstance(body["data"], dict) and len(body["data"]) == 20
    with pytest.raises(MalformedPage, match="NATUR.*page 1.*not a list"):
        parse_page(body, store="NATUR", page=1, per_page=20)


def test_malformed_page_with_an_order_without_id_is_refused(natur: Simulator) -> None:
    natur.fail_next("NATUR", 2, "malformed_id")
    body = fetch(natur, "NATUR", 2).json()
    assert "id" not in body["data"][0] and all("id" in o for o in body["data"][1:])
    with pytest.raises(MalformedPage, match="'id'"):
        parse_page(body, store="NATUR", page=2, per_page=20)
    past_end = fetch(natur, "NATUR", 99).json()
    assert past_end["data"] and "id" not in past_end["data"][0]
    assert natur.request_count("NATUR", "malformed") == 2


def test_missing_or_malformed_authorization_is_401(natur: Simulator) -> None:
    assert fetch(natur, "NATUR", token=None).status_code == 401
    assert fetch(natur, "NATUR", token="short").status_code == 401
    url = natur.store_url("NATUR") + "/api/shop/v2/orders"
    token = natur.token("NATUR")
    assert http().get(url, headers={"Authorization": f"Token {token}"}).status_code == 401
    assert http().get(url, headers={"Authorization": "Bearer"}).status_code == 401
    assert natur.request_count("NATUR", "unauthorized") == 4


def test_wrong_well_formed_token_is_403_and_the_right_one_200(natur: Simulator) -> None:
    assert fetch(natur, "NATUR", token=natur.token("JWLR")).status_code == 403
    assert fetch(natur, "NATUR", token="A" * 80).status_code == 403
    assert fetch(natur, "NATUR").status_code == 200
    assert natur.stats("NATUR")["forbidden"] == 2


def test_token_check_can_be_switched_off(natur: Simulator) -> None:
    natur.set_faults("NATUR", check_token=False)
    assert fetch(natur, "NATUR", token=None).status_code == 200


def test_scripted_auth_failures_model_a_token_revoked_mid_run(natur: Simulator) -> None:
    natur.fail_next("NATUR", 1, "forbidden")
    natur.fail_next("NATUR", 1, "unauthorized")
    assert [fetch(natur, "NATUR").status_code for _ in range(3)] == [403, 401, 200]


def test_token_comes_from_the_token_variable_when_set() -> None:
    token = "Z" * 80
    sim = Simulator([StoreSpec("NATUR", count=5)], environ={"ECOSYNC_TOKEN_NATUR": token})
    assert sim.token("NATUR") == token
    assert check_authorization(f"Bearer {token}", sim.token("NATUR")) is None
    assert check_authorization(f"Bearer {demo_token('NATUR')}", token) == "forbidden"


def test_demo_token_is_80_alphanumerics_fixed_by_seed_and_store() -> None:
    token = demo_token("NATUR", 0)
    assert len(token) == 80 and token.isalnum() and token.isascii()
    assert token == demo_token("NATUR", 0)
    assert token != demo_token("NATUR", 1) and token != demo_token("PURNA", 0)
    assert Simulator([StoreSpec("NATUR", count=1)], seed=3, environ={}).token(
        "NATUR"
    ) == demo_token("NATUR", 3)


def test_failure_rates_hit_about_their_share_and_replay_for_a_seed() -> None:
    def outcomes() -> list[str]:
        sim = Simulator([StoreSpec("NATUR", count=50)], seed=5, environ={})
        sim.set_faults("NATUR", unavailable_rate=0.3, rate_limit_rate=0.1)
        return [_direct(sim) for _ in range(400)]

    first = outcomes()
    assert first == outcomes()
    assert 0.2 < first.count("unavailable") / 400 < 0.4
    assert 0.05 < first.count("rate_limited") / 400 < 0.16
    assert first.count("ok") > 180


def test_requests_per_second_limit_answers_429_beyond_it(natur: Simulator) -> None:
    natur.set_faults("NATUR", max_requests_per_second=5)
    statuses = [fetch(natur, "NATUR").status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}
    response = fetch(natur, "NATUR")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"


def test_arrival_deletion_and_status_rates_change_the_store_under_the_client() -> None:
    sim = Simulator([StoreSpec("NATUR", count=200)], environ={})
    sim.set_faults("NATUR", arrival_rate=1.0)
    for _ in range(5):
        _direct(sim)
    assert sim.count("NATUR") == 205
    sim.set_faults("NATUR", arrival_rate=0.0, deletion_rate=1.0)
    for _ in range(3):
        _direct(sim)
    assert sim.count("NATUR") == 202
    before = {i: sim.order("NATUR", i) for i in sim.ids("NATUR")}
    sim.set_faults("NATUR", deletion_rate=0.0, status_change_rate=1.0)
    _direct(sim)
    changed = [i for i, o in before.items() if o != sim.order("NATUR", i)]
    assert len(changed) == 1


def test_faults_apply_to_one_store_or_to_all(natur: Simulator) -> None:
    natur.set_faults("NATUR", unavailable_rate=1.0)
    assert fetch(natur, "JWLR").status_code == 200
    natur.set_faults(None, unavailable_rate=1.0)
    assert fetch(natur, "JWLR").status_code == 503
    natur.clear_faults()
    assert fetch(natur, "NATUR").status_code == 200 and fetch(natur, "JWLR").status_code == 200


def test_unknown_switches_and_out_of_range_values_are_refused(natur: Simulator) -> None:
    with pytest.raises(SimulatorError, match="unknown fault switch"):
        natur.set_faults("NATUR", latency=5)
    with pytest.raises(SimulatorError, match="unavailable_rate"):
        natur.set_faults("NATUR", unavailable_rate=1.5)
    with pytest.raises(SimulatorError, match="retry_after"):
        natur.set_faults("NATUR", retry_after=-1)
    with pytest.raises(SimulatorError, match="unknown failure kind"):
        natur.fail_next("NATUR", 1, "explode")
    assert natur.faults("NATUR").unavailable_rate == 0.0


def test_large_order_rate_makes_new_orders_wholesale_and_past_a_receivers_limit(
    natur: Simulator,
) -> None:
    changes: list[Change] = []
    natur.add_observer(changes.append)
    natur.set_faults("NATUR", large_order_rate=1.0, large_order_lines=3000)
    try:
        [big] = natur.add_orders("NATUR", 1)
        order = natur.order("NATUR", big)
        assert order is not None and len(order["items"]) == 3000
        assert len(json.dumps({"data": order}, separators=(",", ":"))) > 256 * 1024
        lines = sum(int(float(i["selling_price"])) * i["quantity"] for i in order["items"])
        assert float(order["total_products"]) == lines > 0
        assert float(order["total"]) > float(order["total_products"])  # the delivery fee
        # The page serves the same order, and its OrderCreated carries it whole.
        token = f"Bearer {natur.token('NATUR')}"
        last = str(natur.last_page("NATUR", 20))
        page = natur.handle_orders(
            "NATUR", page=last, per_page="20", authorization=token, path="/x"
        )
        assert page.body["data"][-1] == order
        assert changes[-1].kind == "created" and changes[-1].order == order
        natur.clear_faults("NATUR")
        [small] = natur.add_orders("NATUR", 1)
        assert len(natur.order("NATUR", small)["items"]) <= 3  # type: ignore[index]
        assert len(natur.order("NATUR", big)["items"]) == 3000  # type: ignore[index]
    finally:
        natur.remove_observer(changes.append)


def test_large_order_switches_refuse_bad_values(natur: Simulator) -> None:
    with pytest.raises(SimulatorError, match="large_order_rate"):
        natur.set_faults("NATUR", large_order_rate=1.5)
    with pytest.raises(SimulatorError, match="large_order_lines"):
        natur.set_faults("NATUR", large_order_lines=0)
