"""Status freshness: open orders re-read until final, at a cost set by the open orders."""

from __future__ import annotations

import math

from ecosync_pipeline.mirror import refresh_statuses
from ecosync_pipeline.storage import orders_after
from ecosync_pipeline.storage.ranges import oldest_open_order, open_count
from ecosync_pipeline_tests.helpers import World

FINAL = ("Livré", "Annulé", "Retourné")


def _refresh(world: World):  # type: ignore[no-untyped-def]
    with world.open() as rt:
        store = rt.store("SHOP")
        with rt.client(store) as client:
            return refresh_statuses(store, client=client, engine=rt.engine)


def test_refresh_brings_every_open_order_up_to_date_reading_only_from_the_oldest_open(
    world: World,
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
        oldest = oldest_open_order(rt.engine, "SHOP", FINAL)
        opened = open_count(rt.engine, "SHOP", FINAL)
    assert oldest is not None and 20 < opened < 200, opened
    ids = list(world.simulator.ids("SHOP"))
    still_open = [
        i for i in ids if (world.simulator.order("SHOP", i) or {})["order_state_name"] not in FINAL
    ]
    assert len(still_open) == opened
    open_ids = still_open[::3]
    for order_id in open_ids:
        world.simulator.set_status("SHOP", order_id, "Livré")
    result = _refresh(world)
    # From the page of the oldest open order to the end, plus at most one to find the end.
    span = sum(1 for i in ids if i >= oldest)
    assert result.api_calls <= math.ceil(span / 100) + 2
    assert result.api_calls < math.ceil(len(ids) / 100)
    assert result.counts.updated == len(open_ids)
    assert result.open_before == opened
    assert result.open_after == opened - len(open_ids)
    with world.open() as rt:
        stored = {
            r["order_id"]: r["order_state"] for r in orders_after(rt.engine, "SHOP", None, 10**6)
        }
    served = {i: (world.simulator.order("SHOP", i) or {})["order_state_name"] for i in ids}
    assert [i for i in ids if stored[i] != served[i]] == []


def test_refresh_with_no_open_orders_costs_nothing(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    for order_id in list(world.simulator.ids("SHOP"))[-400:]:
        world.simulator.set_status("SHOP", order_id, "Annulé")
    first = _refresh(world)
    assert first.open_after == 0
    second = _refresh(world)
    assert second.api_calls == 0 and second.counts.pages == 0
