"""The audit of the last sync's window: id sets, so a skip shows even when counts agree."""

from __future__ import annotations

from sqlalchemy import delete

from ecosync_pipeline.mirror import audit_window
from ecosync_pipeline.storage import orders
from ecosync_pipeline.storage.store_state import SyncWindow, last_sync_window
from ecosync_pipeline_tests.helpers import World


def _audit(world: World, window: SyncWindow):  # type: ignore[no-untyped-def]
    with world.open() as rt:
        store = rt.store("SHOP")
        with rt.client(store) as client:
            return audit_window(client, rt.engine, "SHOP", window)


def test_sync_records_its_window_and_the_audit_proves_it_complete(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    before = world.simulator.last_id("SHOP")
    world.simulator.add_orders("SHOP", 130)
    with world.open() as rt:
        rt.sync("SHOP")
        window = last_sync_window(rt.engine, "SHOP")
    assert window is not None
    assert (window.low, window.high) == (before, world.simulator.last_id("SHOP"))
    audit = _audit(world, window)
    assert audit.proven_complete
    assert audit.served >= 130 and audit.api_calls <= 3


def test_audit_names_the_missing_range_when_a_deleted_row_hides_it_from_counts(
    world: World,
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    ids = list(world.simulator.ids("SHOP"))
    # One order deleted upstream (still in the table) and one never synced: the count
    # comes out right, the ids do not.
    world.simulator.delete_orders("SHOP", [ids[-50]])
    with world.open() as rt, rt.engine.begin() as conn:
        conn.execute(delete(orders).where(orders.c.order_id == ids[-20]))
    audit = _audit(world, SyncWindow(low=ids[-120], high=ids[-1]))
    assert audit.complete and not audit.proven_complete
    assert audit.missing == 1
    assert audit.missing_ranges == [(ids[-20], ids[-20])]
    assert audit.gone_unflagged == 1
