"""Ids computed on demand agree with a plain list of the same store, through any changes."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.lab.simulator.idspace import BLOCK, IdSpace
from ecosync_pipeline.lab.simulator.store import SimStore


def _model_page(ids: list[int], page: int, per_page: int) -> list[int]:
    return ids[(page - 1) * per_page : page * per_page]


def test_idspace_lookups_agree_with_full_listing_across_blocks() -> None:
    space = IdSpace(key=42, first_id=10, count=3 * BLOCK + 17, gap_rate=0.2, stride=3)
    ids = list(space)
    assert len(ids) == len(space) == 3 * BLOCK + 17
    assert ids == sorted(set(ids)) and ids[0] == 10 and ids[-1] == space.last_id
    for index in range(0, len(ids), 7):
        assert space.id_at(index) == ids[index]
    present = set(ids)
    for order_id in range(5, space.last_id + 3):
        rank, found = space.locate(order_id)
        assert found == (order_id in present)
        assert rank == bisect_left(ids, order_id)


def test_idspace_with_last_id_ends_exactly_there_and_keeps_first_id() -> None:
    space = IdSpace(key=7, first_id=1, last_id=5000, gap_rate=0.03)
    ids = list(space)
    assert ids[0] == 1 and ids[-1] == 5000 == space.last_id
    assert 0.95 * 5000 < len(ids) < 0.99 * 5000


def test_idspace_gap_rate_and_stride_have_the_asked_for_means() -> None:
    space = IdSpace(key=99, first_id=500_000, count=20_000, gap_rate=0.03, stride=7)
    ids = list(space)
    # Surviving ids are 7 apart on average, divided by the 97% that survive.
    mean_step = (ids[-1] - ids[0]) / (len(ids) - 1)
    assert 6.9 < mean_step < 7.6
    assert min(b - a for a, b in zip(ids, ids[1:], strict=False)) >= 1


def test_empty_store_serves_nothing_and_takes_new_orders_from_first_id() -> None:
    store = SimStore(StoreSpec("EMPTY", first_id=300, count=0), simulator_seed=0)
    assert len(store) == 0 and store.last_id is None and store.page_ids(1, 20) == []
    assert store.add(2) == [300, 301]
    assert store.page_ids(1, 20) == [300, 301]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(min_value=0, max_value=700),
    gap_rate=st.sampled_from([0.0, 0.03, 0.3]),
    stride=st.integers(min_value=1, max_value=9),
    seed=st.integers(min_value=0, max_value=2**32),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "delete", "delete_random", "delete_range"]),
            st.integers(min_value=0, max_value=40),
        ),
        max_size=8,
    ),
    per_page=st.sampled_from([7, 20, 100]),
)
def test_store_pages_and_page_of_match_a_list_model_through_changes(
    count: int,
    gap_rate: float,
    stride: int,
    seed: int,
    ops: list[tuple[str, int]],
    per_page: int,
) -> None:
    store = SimStore(
        StoreSpec("PROP", first_id=1 + seed % 1000, count=count, gap_rate=gap_rate, stride=stride),
        simulator_seed=seed,
    )
    model = list(store.snapshot())
    assert len(model) == count
    for op, n in ops:
        if op == "add":
            new = store.add(n)
            assert all(x > (model[-1] if model else 0) for x in new)
            model.extend(new)
        elif op == "delete" and model:
            victims = model[n % len(model) :: 5][:3] + [model[-1] + 10_000]
            deleted = store.delete(victims)
            assert deleted == sorted(v for v in victims if v in model)
            gone = set(deleted)
            model = [x for x in model if x not in gone]
        elif op == "delete_random":
            deleted = store.delete_random(n)
            assert len(deleted) == min(n, len(model))
            gone = set(deleted)
            model = [x for x in model if x not in gone]
        elif op == "delete_range" and model:
            low, high = model[len(model) // 3], model[2 * len(model) // 3]
            deleted = store.delete_random(n, min_id=low, max_id=high)
            assert all(low <= x <= high for x in deleted)
            gone = set(deleted)
            model = [x for x in model if x not in gone]
        assert len(store) == len(model)
    assert list(store.snapshot()) == model
    assert store.last_id == (model[-1] if model else None)
    pages = -(-len(model) // per_page)
    for page in range(1, pages + 2):
        assert store.page_ids(page, per_page) == _model_page(model, page, per_page)
    for index in range(0, len(model), 11):
        order_id = model[index]
        assert store.page_of(order_id, per_page) == index // per_page + 1
    present = set(model)
    if model:
        absent = [x for x in range(model[0] - 1, model[-1] + 2) if x not in present][:200]
        assert all(store.page_of(x, per_page) is None for x in absent)


def test_snapshot_is_unaffected_by_changes_made_while_streaming() -> None:
    store = SimStore(StoreSpec("SNAP", count=600, gap_rate=0.1), simulator_seed=3)
    expected = list(store.snapshot())
    stream = store.snapshot()
    head = [next(stream) for _ in range(10)]
    store.delete(expected[20:30])
    store.add(5)
    assert head + list(stream) == expected
