"""Store specs: validation, reading `simulator:` keys from the stores file, the server object."""

from __future__ import annotations

import pytest

from ecosync_pipeline.config import parse_stores
from ecosync_pipeline.errors import ConfigError
from ecosync_pipeline.simulator import (
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
