"""webhook_inbox_sensor: one scenario per test, asserting run requests, events and cursor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetObservation,
    DagsterInstance,
    build_sensor_context,
    partition_loading_context,
)
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import Settings
from ecosync_pipeline.definitions import build_definitions
from ecosync_pipeline.defs.keys import GAP_TAG
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.storage import ensure_store, upsert_orders
from ecosync_pipeline.webhooks.inbox import Delivery, store_delivery
from ecosync_pipeline_tests.test_webhooks.conftest import PHONE, SECRET, SECRET_ENV, body_of, order

# The sensor only composes the core (tested on both backends): PostgreSQL is enough here.
pytestmark = pytest.mark.parametrize("module_engine", ["postgresql"], indirect=True)


@pytest.fixture
def settings(
    tmp_path: Path, engine: Engine, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    stores = [
        {
            "identifier": s,
            "name": f"{s} shop",
            "base_url": f"http://127.0.0.1:9/{s}",
            "token_env": f"ECOSYNC_TEST_TOKEN_{s}",
            "webhook_secret_env": SECRET_ENV,
        }
        for s in ("NATUR", "PURNA")
    ]
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": stores}), encoding="utf-8")
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        redis_url=redis_url,
        stores_file=str(path),
        backup_path=str(tmp_path / "backup.json"),
    )


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as inst:
        yield inst


def tick(settings: Settings, instance: DagsterInstance, cursor: str | None = None) -> Any:
    """One tick of the sensor as the code location defines it (partitioned run requests
    need the repository)."""
    repository = build_definitions(settings).get_repository_def()
    sensor = repository.get_sensor_def("webhook_inbox_sensor")
    # The daemon gives the sensor the instance that holds the dynamic store partitions.
    with (
        partition_loading_context(dynamic_partitions_store=instance),
        build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources=ecosync_resources(settings),
            repository_def=repository,
        ) as context,
    ):
        return sensor.evaluate_tick(context)


def deliver(engine: Engine, order_id: int, event: str, at: datetime, **fields: Any) -> None:
    body = body_of(order(order_id, **fields))
    store_delivery(engine, Delivery("NATUR", event, "7", order_id, body, at))


def record(instance: DagsterInstance, result: Any) -> None:
    """Record a tick's asset events in the instance, as the daemon does."""
    for event in result.asset_events:
        instance.report_runless_asset_event(event)


def only(result: Any, kind: type) -> Any:
    [event] = [e for e in result.asset_events if isinstance(e, kind)]
    return event


def test_sensor_applies_pending_deliveries_reports_them_and_asks_for_the_gap_sync(
    settings: Settings, engine: Engine, instance: DagsterInstance
) -> None:
    now = datetime.now(timezone.utc)
    deliver(engine, 10, "OrderCreated", now)  # no order of NATUR in the table: a gap
    deliver(
        engine,
        10,
        "OrderStatusChanged",
        now,
        updated_at="2026-11-20T11:00:00.000000Z",
        order_state_name="Confirmé",
    )
    result = tick(settings, instance)
    record(instance, result)
    # One observation for the stores that take webhooks: totals, and a row per store
    # that had deliveries (PURNA had none).
    seen = only(result, AssetObservation)
    assert seen.partition is None
    totals = {k: v.value for k, v in seen.metadata.items() if k != "stores"}
    assert totals["events_received"] == 2 and totals["events_applied"] == 2
    assert totals["gaps"] == 1 and totals["pending"] == 0
    assert totals["stores_with_deliveries"] == 1 and totals["lag_max_seconds"] >= 0
    [row] = seen.metadata["stores"].value.records
    assert row.data["store"] == "NATUR" and row.data["received"] == 2
    check = only(result, AssetCheckEvaluation)
    assert check.partition is None and check.passed
    assert check.description == (
        "all 2 stores that take webhooks: deliveries keep up with the orders polling finds"
    )
    [run] = result.run_requests
    assert run.partition_key == "NATUR" and run.tags[GAP_TAG] == "1"
    assert run.tags["ecosync/store.NATUR"] == "1"
    cursor = json.loads(result.cursor)["until"]
    assert datetime.fromisoformat(cursor) >= now
    # Nothing of the orders' content nor the secret in what Dagster stores.
    shown = repr(result.asset_events)
    assert PHONE not in shown and SECRET not in shown and "Benali" not in shown
    # The next tick: nothing new, no second run for the same gap, nothing to observe, the
    # check unchanged (not recorded again); the tick says so in its reason.
    again = tick(settings, instance, result.cursor)
    assert not again.run_requests and again.asset_events == []
    assert again.skip_message == (
        "2 stores take webhooks: 0 deliveries received since the last tick, 0 waiting to be "
        "applied; no delivery left a gap to sync"
    )


def test_check_warns_when_polling_finds_orders_after_the_last_delivery(
    settings: Settings, engine: Engine, instance: DagsterInstance
) -> None:
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    deliver(engine, 20, "OrderCreated", hour_ago - timedelta(hours=1))
    polled = [Order.from_payload(order(i), store="NATUR", page=1, index=0) for i in (21, 22)]
    with engine.begin() as conn:
        ensure_store(conn, "NATUR", "NATUR shop")
        upsert_orders(conn, "NATUR", polled, seen_at=hour_ago)  # the sync brought them
    result = tick(settings, instance)
    check = only(result, AssetCheckEvaluation)
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["stores_stopped"].value == 1
    rows = {r.data["store"]: r.data for r in check.metadata["stores"].value.records}
    assert rows["NATUR"]["orders_polled_without_delivery"] == 2 and rows["NATUR"]["stopped"]
    assert not rows["PURNA"]["stopped"]  # never delivered, but nothing polled either
    description = check.description or ""
    assert description.startswith("1 of 2 stores that take webhooks: store NATUR: polling")
    assert "ecosync webhooks register" in description and "store PURNA" not in description


def test_with_no_store_taking_webhooks_the_check_passes_saying_so_once(
    settings: Settings, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = yaml.safe_load(Path(settings.stores_file).read_text(encoding="utf-8"))
    for store in stores["stores"]:
        del store["webhook_secret_env"]
    Path(settings.stores_file).write_text(yaml.safe_dump(stores), encoding="utf-8")
    result = tick(settings, instance)
    record(instance, result)
    assert result.skip_message.startswith("no store takes webhooks")
    check = only(result, AssetCheckEvaluation)
    assert check.passed and (check.description or "").startswith("no store takes webhooks")
    assert tick(settings, instance).asset_events == []


def test_check_warns_naming_the_store_whose_authentic_delivery_was_kept_refused(
    settings: Settings, engine: Engine, instance: DagsterInstance
) -> None:
    now = datetime.now(timezone.utc)
    body = b'{"not": "an order"}'
    refused = Delivery("PURNA", "OrderCreated", "7", 0, body, now, refused="no order id")
    store_delivery(engine, refused)
    result = tick(settings, instance)
    check = only(result, AssetCheckEvaluation)
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["stores_with_refused_deliveries"].value == 1
    assert check.metadata["stores_stopped"].value == 0
    rows = {r.data["store"]: r.data for r in check.metadata["stores"].value.records}
    assert rows["PURNA"]["deliveries_refused"] == 1 and rows["NATUR"]["deliveries_refused"] == 0
    description = check.description or ""
    assert description.startswith("1 of 2 stores that take webhooks: store PURNA:")
    assert "kept refused" in description and "store NATUR" not in description
    seen = only(result, AssetObservation)
    assert seen.metadata["events_refused"].value == 1
    assert "deliveries stopped or refused for PURNA" in (result.skip_message or "")
