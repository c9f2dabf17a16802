"""Driving the simulator from another process: /_sim endpoints, SimulatorClient, the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from ecosync_pipeline.cli import main
from ecosync_pipeline.lab.simulator import (
    ORDERS_PATH,
    Simulator,
    SimulatorClient,
    SimulatorError,
    StoreSpec,
    UnknownStore,
    create_app,
)
from ecosync_pipeline_tests.test_simulator.helpers import fetch, http, page_ids


@pytest.fixture
def client(simulator: Simulator) -> Iterator[SimulatorClient]:
    """A control client of the session simulator, which holds NATUR (120) and PURNA (50)."""
    simulator.configure(
        [
            StoreSpec("NATUR", count=120, gap_rate=0.03),
            StoreSpec("PURNA", first_id=500_000, count=50, stride=7),
        ]
    )
    assert simulator.url is not None
    with SimulatorClient(simulator.url) as control:
        yield control


def test_client_adds_orders_that_the_orders_endpoint_then_serves(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    new = client.add_orders("NATUR", 15)
    assert len(new) == 15 and client.count("NATUR") == 135 == simulator.count("NATUR")
    assert client.last_id("NATUR") == new[-1]
    assert page_ids(simulator, "NATUR", 7) == new[:]  # 120 fill pages 1..6 exactly


def test_client_deletes_given_and_random_orders(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    first_page = page_ids(simulator, "NATUR", 1)
    assert client.delete_orders("NATUR", [first_page[0], 999_999]) == [first_page[0]]
    low, high = first_page[5], first_page[15]
    deleted = client.delete_random("NATUR", 3, min_id=low, max_id=high)
    assert len(deleted) == 3 and all(low <= i <= high for i in deleted)
    assert client.count("NATUR") == 116
    assert client.page_of("NATUR", first_page[0]) is None
    assert client.page_of("NATUR", page_ids(simulator, "NATUR", 2)[0]) == 2


def test_client_changes_statuses(simulator: Simulator, client: SimulatorClient) -> None:
    order_id = page_ids(simulator, "NATUR", 3)[0]
    client.set_status("NATUR", order_id, "Expédié", "Confirmé")
    assert fetch(simulator, "NATUR", 3).json()["data"][0]["order_state_name"] == "Expédié"
    assert len(client.change_random_statuses("NATUR", 2)) == 2
    with pytest.raises(SimulatorError, match="unknown order state"):
        client.set_status("NATUR", order_id, "Perdu")


def test_client_sets_faults_and_scripts_failures(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    switches = client.set_faults("NATUR", unavailable_rate=1.0, retry_after=None)
    assert switches["unavailable_rate"] == 1.0 and switches["retry_after"] is None
    assert fetch(simulator, "NATUR").status_code == 503
    client.clear_faults("NATUR")
    client.fail_next("NATUR", 2, "rate_limited")
    assert [fetch(simulator, "NATUR").status_code for _ in range(3)] == [429, 429, 200]
    assert client.stats("NATUR")["rate_limited"] == 2
    client.set_faults(None, unavailable_rate=1.0)
    assert fetch(simulator, "PURNA").status_code == 503
    client.reset_counts("NATUR")
    assert client.stats("NATUR")["total"] == 0


def test_ids_stream_as_newline_text_matches_ground_truth(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    client.delete_random("NATUR", 4)
    assert list(client.ids("NATUR")) == list(simulator.ids("NATUR"))
    response = http().get(f"{simulator.url}/_sim/PURNA/ids")
    assert response.headers["content-type"].startswith("text/plain")
    assert [int(x) for x in response.text.split()] == list(simulator.ids("PURNA"))


def test_reset_restores_the_initial_stores(simulator: Simulator, client: SimulatorClient) -> None:
    before = list(simulator.ids("NATUR"))
    client.add_orders("NATUR", 3)
    client.delete_random("NATUR", 3)
    client.set_faults("NATUR", unavailable_rate=1.0)
    client.reset()
    assert list(simulator.ids("NATUR")) == before
    assert simulator.faults("NATUR").unavailable_rate == 0.0
    described = {s["store"]: s for s in client.stores()}
    assert described["PURNA"]["first_id"] == 500_000 and described["NATUR"]["count"] == 120


def test_control_errors_are_clear(simulator: Simulator, client: SimulatorClient) -> None:
    with pytest.raises(UnknownStore, match="NOPE is not simulated"):
        client.add_orders("NOPE", 1)
    with pytest.raises(UnknownStore):
        list(client.ids("NOPE"))
    with pytest.raises(SimulatorError, match="unknown fault switch"):
        client.set_faults("NATUR", explode=True)
    response = http().post(f"{simulator.url}/_sim/NATUR/orders", content=b"{not json")
    assert response.status_code == 400 and "not JSON" in response.json()["message"]
    with pytest.raises(SimulatorError, match="did not answer"):
        SimulatorClient("http://127.0.0.1:9", timeout=1).count("NATUR")


def test_app_runs_in_process_through_asgi_transport() -> None:
    sim = Simulator([StoreSpec("NATUR", count=30)], environ={})

    async def scenario() -> tuple[int, list[int], int]:
        transport = httpx.ASGITransport(app=create_app(sim))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            headers = {"Authorization": f"Bearer {sim.token('NATUR')}"}
            page = await client.get(f"/NATUR{ORDERS_PATH}", params={"page": 2}, headers=headers)
            added = await client.post("/_sim/NATUR/orders", json={"count": 2})
            refused = await client.get(f"/NATUR{ORDERS_PATH}")
            return (
                page.status_code,
                [o["id"] for o in page.json()["data"]],
                len(added.json()["ids"]) + refused.status_code,
            )

    status, ids, rest = asyncio.run(scenario())
    assert status == 200 and ids == list(range(21, 31))
    assert sim.page_ids("NATUR", 2) == list(range(21, 33))
    assert rest == 2 + 401 and sim.count("NATUR") == 32


def test_cli_add_orders_appends_to_a_running_simulator(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulator",
            "add-orders",
            "--store",
            "NATUR",
            "--count",
            "15",
            "--url",
            str(simulator.url),
        ],
    )
    assert result.exit_code == 0, result.output
    assert simulator.count("NATUR") == 135
    assert f"ids {simulator.page_ids('NATUR', 7)[0]}..{simulator.last_id('NATUR')}" in (
        result.output
    )


def test_cli_reports_an_unknown_store_and_exits_1(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    result = CliRunner().invoke(
        main, ["simulator", "add-orders", "--store", "NOPE", "--url", str(simulator.url)]
    )
    assert result.exit_code == 1
    assert "UnknownStore:" in result.output and "NOPE is not simulated" in result.output


def test_cli_faults_delete_and_stats_drive_the_simulator(
    simulator: Simulator,
    client: SimulatorClient,
) -> None:
    runner = CliRunner()
    url = str(simulator.url)
    result = runner.invoke(
        main,
        [
            "simulator",
            "faults",
            "--store",
            "NATUR",
            "latency_ms=5",
            "retry_after=null",
            "malformed_kind=missing_id",
            "--url",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    faults = simulator.faults("NATUR")
    assert (faults.latency_ms, faults.retry_after, faults.malformed_kind) == (5, None, "missing_id")
    victim = simulator.page_ids("NATUR", 1)[0]
    result = runner.invoke(
        main, ["simulator", "delete-orders", "--store", "NATUR", "--ids", str(victim), "--url", url]
    )
    assert result.exit_code == 0 and not simulator.contains("NATUR", victim)
    result = runner.invoke(main, ["simulator", "stats", "--store", "PURNA", "--url", url])
    assert result.exit_code == 0 and '"first_id": 500000' in result.output
