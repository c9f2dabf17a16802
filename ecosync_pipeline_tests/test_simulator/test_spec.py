"""Store specs: validation, reading `simulator:` keys from the stores file, the server object."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from ecosync_pipeline.config import parse_stores
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.lab.simulator import (
    Simulator,
    SimulatorError,
    SimulatorServer,
    StoreSpec,
    UnknownStore,
)
from ecosync_pipeline_tests.test_simulator.helpers import page_ids

STORES = """
stores:
  - identifier: NATUR
    name: Natura Bio
    base_url: http://127.0.0.1:8765/NATUR
    token_env: MY_NATUR_TOKEN
    simulator:
      first_id: 100
      count: 40
      gap_rate: 0.1
      catalog: cosmetics
      until: 2025-01-31
  - identifier: PLAIN
    name: No simulator keys
    base_url: http://127.0.0.1:8765/PLAIN
    token_env: PLAIN_TOKEN
"""


def test_specs_are_read_from_the_simulator_keys_of_configured_stores() -> None:
    sim = Simulator.from_stores(parse_stores(STORES), environ={"MY_NATUR_TOKEN": "t" * 80})
    spec = sim.spec("NATUR")
    assert (spec.first_id, spec.count, spec.gap_rate, spec.name) == (100, 40, 0.1, "Natura Bio")
    assert spec.until.year == 2025 and spec.until.tzinfo is not None
    assert sim.token("NATUR") == "t" * 80 and sim.count("NATUR") == 40
    assert sim.first_id("NATUR") == 100
    assert sim.count("PLAIN") == 1000  # a store without simulator keys gets 1000 orders


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("      colour: blue\n", "unknown simulator keys colour"),
        ("      gap_rate: 2\n", "gap_rate must be a number in \\[0, 1\\)"),
        ("      count: 5\n      last_id: 9\n", "count or last_id, not both"),
        ("      catalog: cars\n", "catalog must be one of"),
        ("      until: yesterday\n", "simulator.until must be an ISO date"),
    ],
)
def test_bad_simulator_keys_are_config_errors_naming_the_store(keys: str, message: str) -> None:
    text = (
        "stores:\n  - identifier: NATUR\n    name: N\n    base_url: http://x/NATUR\n"
        "    token_env: T\n    simulator:\n" + keys
    )
    with pytest.raises(ConfigError, match=f"NATUR.*{message}"):
        Simulator.from_stores(parse_stores(text), environ={})


def test_spec_validation_refuses_bad_shapes() -> None:
    with pytest.raises(SimulatorError, match="first_id"):
        StoreSpec("NATUR", first_id=0)
    with pytest.raises(SimulatorError, match="stride"):
        StoreSpec("NATUR", stride=0)
    with pytest.raises(SimulatorError, match="identifier"):
        StoreSpec("NA-TUR")
    with pytest.raises(SimulatorError, match="configured twice"):
        Simulator([StoreSpec("NATUR"), StoreSpec("NATUR")])


def test_unknown_store_in_the_python_api_names_the_simulated_stores() -> None:
    sim = Simulator([StoreSpec("NATUR", count=3)], environ={})
    with pytest.raises(UnknownStore, match="store PURNA is not simulated.*NATUR"):
        sim.count("PURNA")


def test_store_url_needs_a_running_server() -> None:
    sim = Simulator([StoreSpec("NATUR", count=3)], environ={})
    with pytest.raises(SimulatorError, match="not being served"):
        sim.store_url("NATUR")


def test_server_serves_on_a_free_port_and_gives_store_urls() -> None:
    sim = Simulator([StoreSpec("NATUR", count=25)], environ={})
    with SimulatorServer(sim) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert server.store_url("NATUR") == sim.store_url("NATUR") == f"{server.url}/NATUR"
        store = sim.as_store("NATUR")
        assert store.base_url == server.store_url("NATUR")
        assert store.token_env == "ECOSYNC_TOKEN_NATUR"
        assert page_ids(sim, "NATUR", 2) == list(range(21, 26))
    assert sim.url is None


def test_simulator_fixture_starts_each_test_with_no_stores(simulator: Simulator) -> None:
    assert simulator.stores() == []
    simulator.configure([StoreSpec("NATUR", count=2)])
    assert page_ids(simulator, "NATUR", 1) == [1, 2]


def test_simulator_keys_rebuild_a_store_with_its_stride_and_added_orders() -> None:
    live = Simulator(
        [
            StoreSpec("PURNA", first_id=500_000, count=60, stride=7, gap_rate=0.05),
            StoreSpec("NATUR", first_id=1, last_id=90, gap_rate=0.1, catalog="jewelry"),
        ]
    )
    live.add_orders("PURNA", 5)
    live.add_orders("PURNA", 3)
    live.add_orders("NATUR", 4)
    entries = [
        {
            "identifier": store,
            "name": store,
            "base_url": f"http://127.0.0.1:8765/{store}",
            "token_env": f"TOKEN_{store}",
            "simulator": replace(live.spec(store), added=live.added(store)).simulator_keys(),
        }
        for store in live.stores()
    ]
    again = Simulator.from_stores(parse_stores(yaml.safe_dump({"stores": entries})))
    for store in live.stores():
        assert list(again.ids(store)) == list(live.ids(store)), store
        assert again.spec(store).catalog == live.spec(store).catalog
    assert again.added("PURNA") == 8
    assert max(again.ids("PURNA")) > 500_000 + 60 * 7 // 2  # the stride survived
