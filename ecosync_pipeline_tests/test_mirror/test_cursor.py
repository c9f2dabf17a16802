"""Cursor mode: newest first with the keyset cursor, each page committed, no position."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from ecosync_pipeline.errors import MalformedPage
from ecosync_pipeline.mirror import audit_window, reconcile_store
from ecosync_pipeline.storage import store_summary
from ecosync_pipeline.storage.store_state import last_sync_window
from ecosync_pipeline_tests.helpers import World, reconcile


def _cursor(world: World) -> World:
    world.stores[0] = replace(world.stores[0], read_mode="cursor")
    return world


def _missing(world: World) -> tuple[int, int]:
    """(missing, duplicated) up to the table's last id."""
    with world.open() as rt:
        last = store_summary(rt.engine, "SHOP").last_order_id
        rec = reconcile(rt, world.simulator, "SHOP", up_to=last)
    return rec.missing, rec.duplicated


def test_cursor_import_then_incremental_costs_one_call_per_100_new_orders_plus_one(
    world: World,
) -> None:
    _cursor(world)
    with world.open() as rt:
        first = rt.sync("SHOP")
    assert first.orders_new == world.simulator.count("SHOP")
    # A first import reads to the store's end: one more call confirms its lowest id.
    assert first.api_calls == math.ceil(world.simulator.count("SHOP") / 100) + 1
    for k in (0, 1, 100, 250):
        world.simulator.add_orders("SHOP", k)
        with world.open() as rt:
            result = rt.sync("SHOP")
        assert result.orders_new == k
        assert result.api_calls <= math.ceil(k / 100) + 1, (k, result.api_calls)
    assert _missing(world) == (0, 0)
    with world.open() as rt:
        # Nothing of it lives in the position layers: a cache loss costs nothing.
        assert rt.chain.redis.read("SHOP") is None


def test_swaps_during_a_run_skip_orders_in_page_mode_not_in_cursor_mode(
    build, sqlite_url: str
) -> None:  # type: ignore[no-untyped-def]
    world = build()
    world.simulator.set_faults("SHOP", swap_rate=1.0)
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.set_faults("SHOP", swap_rate=0.0)
    missing, duplicated = _missing(world)
    assert missing > 0 and duplicated == 0
    # The completeness audit sees the skip by ids, and the reconciliation repairs it.
    with world.open() as rt:
        store = rt.store("SHOP")
        window = last_sync_window(rt.engine, "SHOP")
        assert window is not None
        with rt.client(store) as client:
            audit = audit_window(client, rt.engine, "SHOP", window)
            assert audit.missing == missing and audit.missing_ranges
            reconcile_store(store, client=client, engine=rt.engine)
            assert audit_window(client, rt.engine, "SHOP", window).proven_complete
    assert _missing(world) == (0, 0)

    cursor = _cursor(build(database_url=sqlite_url))
    cursor.simulator.set_faults("SHOP", swap_rate=1.0)
    with cursor.open() as rt:
        rt.sync("SHOP")
    cursor.simulator.set_faults("SHOP", swap_rate=0.0)
    assert _missing(cursor) == (0, 0)


def test_cursor_store_on_a_server_without_the_cursor_mode_fails_naming_read_mode(
    world: World,
) -> None:
    _cursor(world)
    world.simulator.set_faults("SHOP", cursor_mode=False)
    with world.open() as rt, pytest.raises(MalformedPage, match="read_mode: pages"):
        rt.sync("SHOP")
    with world.open() as rt:
        assert store_summary(rt.engine, "SHOP").order_count == 0
