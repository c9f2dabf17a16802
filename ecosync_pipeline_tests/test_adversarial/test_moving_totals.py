"""Orders deleted and arriving between two pages of one read: meta.total moves, or not.

A deletion on a page already read moves the first order of every later page one slot
back: reading on by page number skips it. The reader relocates when meta.total falls;
but meta is a hint (absent on some servers), and an arrival in the same moment leaves
the total where it was. Whatever the meta says, no order is skipped and none is stored
twice, and the position never passes an order that is not in the table.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ecosync_pipeline.runtime import Runtime
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


UNSEEN = pytest.mark.xfail(
    strict=True,
    reason="known gap: page-number reads see a deletion mid-read only when meta.total "
    "falls; without meta, or with as many arrivals, the order moved back a page is skipped "
    "(found later only by the reconciliation's id sets)",
)
CASES = [
    "one deleted",
    pytest.param("one deleted, no meta", marks=UNSEEN),
    pytest.param("one deleted as many arrive", marks=UNSEEN),
    pytest.param("three deleted as many arrive", marks=UNSEEN),
    pytest.param("three deleted as many arrive, no meta", marks=UNSEEN),
    "orders arrive",
]


@pytest.mark.parametrize("case", CASES)
def test_orders_deleted_or_arriving_mid_read_are_neither_skipped_nor_doubled(
    case: str, pg_world: CliWorld, sleepless_runtime: Runtime
) -> None:
    store = AdversarialStore("MOVING", make_token(), list(FIRST), meta="no meta" not in case)
    pg_world.configure(store)
    assert sleepless_runtime.sync("MOVING", budget_seconds=600).reached_end
    store.add(*MORE)
    store.before_page[4] = changes(store, case)
    result = sleepless_runtime.sync("MOVING", budget_seconds=600)
    stored = set(pg_world.stored("MOVING"))
    assert result.last_order_id is not None
    passed = {i for i in store.ids if i <= result.last_order_id} - stored
    assert passed == set(), f"the position passed orders never written: {sorted(passed)}"
    sleepless_runtime.sync("MOVING", budget_seconds=600)
    assert set(store.ids) - set(pg_world.stored("MOVING")) == set()
