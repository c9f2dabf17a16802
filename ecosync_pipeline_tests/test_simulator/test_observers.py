"""The simulator's observer hook: every creation, deletion and status change is reported."""

from __future__ import annotations

from ecosync_pipeline.lab.simulator import Change, Simulator, StoreSpec


def test_observer_sees_each_creation_deletion_and_status_change_with_the_order() -> None:
    simulator = Simulator([StoreSpec("NATUR", count=30)])
    seen: list[Change] = []
    simulator.add_observer(seen.append)
    created = simulator.add_orders("NATUR", 2)
    simulator.set_status("NATUR", created[0], "Confirmé")
    before = simulator.order("NATUR", 5)
    simulator.delete_orders("NATUR", [5, 99_999])  # 99,999 is not served: no change
    assert [(c.kind, c.order_id) for c in seen] == [
        ("created", created[0]),
        ("created", created[1]),
        ("status", created[0]),
        ("deleted", 5),
    ]
    assert seen[2].order["order_state_name"] == "Confirmé"
    assert seen[3].order == before
    assert all(c.store == "NATUR" for c in seen)


def test_observer_survives_reconfiguration_and_can_be_removed() -> None:
    simulator = Simulator([StoreSpec("NATUR", count=10)])
    seen: list[Change] = []
    simulator.add_observer(seen.append)
    simulator.configure([StoreSpec("PURNA", count=10)])
    simulator.change_random_statuses("PURNA", 3)
    assert [c.kind for c in seen] == ["status"] * 3
    simulator.remove_observer(seen.append)
    simulator.add_orders("PURNA", 1)
    assert len(seen) == 3
