"""One order with an odd optional field never blocks its store (`ecosync sync`, both databases).

The field the database cannot hold is stored empty and named (store, page, order id,
field) in what the user sees; every order of the store is stored, and the next run
carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import StorageError
from ecosync_pipeline.storage import ensure_store, make_engine, migrate, upsert_orders
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import (
    CliWorld,
    dialect,
    leaked,
    make_token,
    missing,
)

ODD_ID = 5
IDS = list(range(1, 11))

# case: (the odd fields of order 5, the field set aside, the column that is left empty)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "NUL in full_name": ({"full_name": "Ali\x00ce"}, "full_name", "full_name"),
    "NUL in an item": ({"items": [{"sku": "A\x00B", "quantity": 1}]}, "items", "items"),
    "total 1e15": ({"total": 1e15}, "total", "total"),
    "total 'NaN'": ({"total": "NaN"}, "total", "total"),
    "created_at 0001-01-01T00:00:00+05:00": (
        {"created_at": "0001-01-01T00:00:00+05:00"},
        "created_at",
        "created_at",
    ),
    "lone surrogate in full_name": ({"full_name": "caf\ud800"}, "full_name", "full_name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_order_with_a_field_the_database_cannot_hold_is_stored_without_it_and_named(
    case: str,
    cli_world: CliWorld,
    case_row: Callable[..., None],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd, field, column = CASES[case]
    store = AdversarialStore("ODD", make_token(), list(IDS), odd={ODD_ID: odd})
    cli_world.configure(store)
    first = cli_world.sync()
    assert first.exit_code == 0, first.output
    expected = f"store ODD: page 1: order {ODD_ID}: field '{field}' set aside"
    assert expected in first.stderr, first.stderr
    rows = cli_world.stored("ODD")
    assert missing(cli_world, store, IDS) == 0
    assert rows[ODD_ID][column] in (None, []), rows[ODD_ID][column]
    assert rows[ODD_ID + 1]["full_name"] == f"Client {ODD_ID + 1}"
    # The value set aside is kept exactly as served, in the order's raw JSON.
    raw = json.loads(rows[ODD_ID]["raw_payload"])
    assert raw["id"] == ODD_ID and all(raw[k] == v for k, v in odd.items()), raw
    assert rows[ODD_ID + 1]["raw_payload"] is None
    # The next run is not blocked either: new orders arrive and are stored.
    store.ids += [11, 12]
    second = cli_world.sync()
    assert second.exit_code == 0, second.output
    lost = missing(cli_world, store, store.ids)
    assert lost == 0
    shown = leaked(first.output + second.output + caplog.text, store.token)
    assert shown == 0
    line = next(x for x in first.stderr.splitlines() if expected in x)
    case_row(
        f"{case} ({dialect(database_url)})",
        missing=lost,
        blocked=False,
        leaked=shown,
        peak_mb=None,
        message=line,
    )


def test_order_whose_id_the_table_cannot_hold_is_refused_by_name_and_the_rest_flow(
    cli_world: CliWorld,
    case_row: Callable[..., None],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = 2**63
    store = AdversarialStore("BIGID", make_token(), [*IDS[:-1], huge])
    cli_world.configure(store)
    first = cli_world.sync()
    assert first.exit_code == 0, first.output
    expected = f"store BIGID: page 1: order {huge}: refused"
    assert expected in first.stderr, first.stderr
    assert huge not in cli_world.stored("BIGID")
    store.ids += [huge + 1]  # later orders beyond the table are refused too, never a crash
    second = cli_world.sync()
    assert second.exit_code == 0, second.output
    lost = missing(cli_world, store, IDS[:-1])
    assert lost == 0
    shown = leaked(first.output + second.output + caplog.text, store.token)
    assert shown == 0
    line = next(x for x in first.stderr.splitlines() if expected in x)
    case_row(
        f"id 2^63 ({dialect(database_url)})",
        missing=lost,
        blocked=False,
        leaked=shown,
        peak_mb=None,
        message=line,
    )


def test_a_value_its_column_refuses_is_a_storage_error_naming_the_store_and_ids(
    database_url: str,
) -> None:
    # An Order built past the model's checks: the upsert still reports it as ours.
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            ensure_store(conn, "RAW", "Raw")
        refused = pytest.raises(StorageError, match=r"store RAW: writing 1 orders \(ids 7..7\)")
        with refused, engine.begin() as conn:
            upsert_orders(conn, "RAW", [Order(id=7, total=Decimal("1e15"))])
    finally:
        engine.dispose()
