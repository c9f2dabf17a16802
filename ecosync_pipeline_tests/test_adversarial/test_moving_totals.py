"""Orders deleted and arriving between two pages of one read: meta.total moves, or not.

A deletion on a page already read moves the first order of every later page one slot
back: reading on by page number skips it. The reader relocates when meta.total falls,
and then skips nothing. But meta is a hint (absent on some servers), and an arrival in
the same moment leaves the total where it was: a page-number read cannot see those
(DESIGN: a page-mode sync may lose orders to deletions mid-read). There the promise is
the mirror's: the skipped ids are found by id sets and fetched, and the table ends equal
to the server, deletions flagged.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ecosync_pipeline.mirror import reconcile_store
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import iter_order_ids
from ecosync_pipeline.storage.ranges import deleted_ids
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, make_token

FIRST = list(range(701, 741))
"""Two pages of 20, synced before the read the changes land in."""
MORE = list(range(741, 801))
"""Pages 3, 4 and 5 of the read."""
AT = "2024-03-02T10:00:00+01:00"


def changes(store: AdversarialStore, case: str) -> Callable[[], None]:
    """What happens upstream just before page 4 is served, for each case."""

    def delete_read(count: int) -> None:
        for order_id in (725, 745, 755)[:count]:
            store.delete(order_id, AT)

    def apply() -> None:
        if case.startswith("one deleted"):
            delete_read(1)
        if case.startswith("three deleted"):
            delete_read(3)
        if "as many arrive" in case:
            store.add(*range(801, 801 + (3 if case.startswith("three") else 1)))
        if case == "orders arrive":
            store.add(*range(801, 831))

    return apply


SEEN = ["one deleted", "orders arrive"]
"""meta.total falls (or only grows): the read itself skips nothing."""
UNSEEN = [
    "one deleted, no meta",
    "one deleted as many arrive",
    "three deleted as many arrive",
    "three deleted as many arrive, no meta",
]
"""Nothing tells the read: the reconciliation's id sets find what it skipped."""


def read_with_changes(case: str, world: CliWorld, runtime: Runtime) -> AdversarialStore:
    """Sync two pages, add three more, and sync again with ``case`` landing before page 4."""
    store = AdversarialStore("MOVING", make_token(), list(FIRST), meta="no meta" not in case)
    world.configure(store)
    assert runtime.sync("MOVING", budget_seconds=600).reached_end
    store.add(*MORE)
    store.before_page[4] = changes(store, case)
    return store


@pytest.mark.parametrize("case", SEEN)
def test_orders_deleted_or_arriving_mid_read_are_neither_skipped_nor_doubled(
    case: str, pg_world: CliWorld, sleepless_runtime: Runtime
) -> None:
    store = read_with_changes(case, pg_world, sleepless_runtime)
    result = sleepless_runtime.sync("MOVING", budget_seconds=600)
    stored = set(pg_world.stored("MOVING"))
    assert result.last_order_id is not None
    passed = {i for i in store.ids if i <= result.last_order_id} - stored
    assert passed == set(), f"the position passed orders never written: {sorted(passed)}"
    sleepless_runtime.sync("MOVING", budget_seconds=600)
    assert set(store.ids) - set(pg_world.stored("MOVING")) == set()


@pytest.mark.parametrize("case", UNSEEN)
def test_what_a_read_cannot_see_the_reconciliation_repairs_by_id_sets(
    case: str, pg_world: CliWorld, sleepless_runtime: Runtime
) -> None:
    store = read_with_changes(case, pg_world, sleepless_runtime)
    sleepless_runtime.sync("MOVING", budget_seconds=600)
    rt = sleepless_runtime
    with rt.client(rt.store("MOVING")) as client:
        reconcile_store(rt.store("MOVING"), client=client, engine=rt.engine)
    flagged = set(deleted_ids(rt.engine, "MOVING"))
    live = set(iter_order_ids(rt.engine, "MOVING")) - flagged
    assert live == set(store.ids), sorted(live ^ set(store.ids))
    assert flagged == set(FIRST + MORE) - set(store.ids)
