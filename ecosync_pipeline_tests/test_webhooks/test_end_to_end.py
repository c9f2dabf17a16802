"""From the simulator's changes to the orders table, over real HTTP, through the CLI.

The webhooks are registered with `ecosync webhooks register` against the simulator's
webhooks API; the simulator then signs and delivers each creation, status change and
deletion to the receiver, whose applier writes them. The receiver is stopped for a
while: EcoManager's retries (time-scaled) bring every delivery once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.cli import main
from ecosync_pipeline.config import Store, load_stores
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.storage.schema import orders
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.worker import Applier
from ecosync_pipeline_tests.test_webhooks.conftest import SECRET, SECRET_ENV

# Concurrency between the receiver's inserts and the applier is SQLite's harder case.
pytestmark = pytest.mark.parametrize("module_engine", ["sqlite"], indirect=True)


@pytest.fixture
def world(
    simulator: Simulator,
    engine: Engine,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Simulator, list[Store]]]:
    simulator.configure([StoreSpec("NATUR", count=30, token_env="ECOSYNC_E2E_TOKEN")])
    entry = {
        "identifier": "NATUR",
        "name": "Natura",
        "base_url": simulator.store_url("NATUR"),
        "token_env": "ECOSYNC_E2E_TOKEN",
        "requests_per_second": 100,
        "webhook_secret_env": SECRET_ENV,
    }
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": [entry]}), encoding="utf-8")
    for key, value in {
        "ECOSYNC_STORES_FILE": str(path),
        "ECOSYNC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "ECOSYNC_REDIS_URL": redis_url,  # the store's rate budget is counted there
        "ECOSYNC_E2E_TOKEN": simulator.token("NATUR"),
        SECRET_ENV: SECRET,
    }.items():
        monkeypatch.setenv(key, value)
    yield simulator, load_stores(path)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def table(engine: Engine) -> dict[int, tuple[str | None, bool]]:
    c = orders.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.order_id, c.order_state, c.deleted_at)).all()
    return {int(i): (state, deleted is not None) for i, state, deleted in rows}


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["webhooks", *args])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output  # it goes in the request body and nowhere else
    return result.output


def test_registered_webhooks_bring_every_change_into_the_table_even_across_a_receiver_outage(
    world: tuple[Simulator, list[Store]], engine: Engine
) -> None:
    simulator, stores = world
    applier = Applier(engine, {"NATUR": "Natura"}, poll_seconds=0.5).start()
    app = create_receiver_app(engine, stores, on_stored=applier.wake)
    server = ThreadedServer(app).start()
    port = server.port
    try:
        url = f"{server.url}/webhooks/NATUR"
        assert cli("register", "--store", "NATUR", "--url", url).count("created") == 5
        assert cli("register", "--store", "NATUR", "--url", url).count("updated") == 5
        assert cli("list", "--store", "NATUR").count(url) == 5  # nothing new the second time

        new = simulator.add_orders("NATUR", 5)
        simulator.set_status("NATUR", new[0], "Confirmé")
        simulator.set_status("NATUR", new[1], "Annulé")
        simulator.delete_orders("NATUR", [new[2]])
        hub = simulator.webhooks.dispatcher
        assert hub.wait_idle(10)
        expected = {i: (simulator.order("NATUR", i) or {}).get("order_state_name") for i in new}
        wait_for(
            lambda: len(table(engine)) == 5 and applier.totals.total >= hub.counts["delivered"]
        )
        rows = table(engine)
        assert rows[new[2]][1] is True  # flagged deleted, kept
        assert {i: s for i, (s, gone) in rows.items() if not gone} == {
            i: s for i, s in expected.items() if i != new[2]
        }

        # The receiver goes away; EcoManager retries (22 ms, 110 ms, 550 ms, 2.75 s ...).
        hub.policy = hub.policy.updated(time_scale=0.001)
        server.stop()
        during = simulator.add_orders("NATUR", 3)
        wait_for(lambda: hub.counts["failed_attempts"] >= 6)
        server = ThreadedServer(app, port=port).start()
        assert hub.wait_idle(20)
        assert hub.counts["exhausted"] == 0
        wait_for(lambda: set(during) <= set(table(engine)))
        replayed = cli("replay", "--store", "NATUR", "--since", "2000-01-01")
        assert ", 0 written," in replayed  # everything is already applied: all older
        assert "deleted 5 webhooks" in cli("delete", "--store", "NATUR")
    finally:
        server.stop()
        applier.stop()
