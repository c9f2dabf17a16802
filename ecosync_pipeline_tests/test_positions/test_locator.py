"""The page locator against id lists: exact resume page, and the fetch bound."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.ecomanager.locator import fetch_bound, locate_resume_page
from ecosync_pipeline_tests.test_positions.fakes import ListFetcher, ids_with_gaps, resume_page


def _check(ids: list[int], target: int | None, hint: int, per_page: int) -> int:
    fetcher = ListFetcher(ids)
    located = locate_resume_page(fetcher, target, hint, per_page)
    true_page = resume_page(ids, target, per_page)
    assert located.page == true_page
    assert located.page_data.number == true_page
    assert located.fetches == fetcher.fetches
    assert fetcher.calls[0] == (1 if target is None else max(1, hint))
    if target is not None:
        assert located.fetches <= fetch_bound(hint, true_page)
    return located.fetches


def test_locator_uses_one_fetch_when_hint_page_holds_target() -> None:
    ids = ids_with_gaps(1000)
    target = ids[437]
    hint = 437 // 20 + 1
    assert _check(ids, target, hint, 20) == 1


def test_locator_finds_resume_page_when_hint_overshoots_last_page() -> None:
    # PURNA: ids from 500,000, the id / 20 estimate lands ~35,000 pages past the end.
    ids = list(range(500_000, 500_000 + 7 * 30_000, 7))
    target = ids[-1]
    hint = target // 20
    fetches = _check(ids, target, hint, 20)
    assert fetches <= fetch_bound(hint, 1500)


def test_locator_gallops_up_when_hint_is_page_one() -> None:
    ids = ids_with_gaps(9000)
    _check(ids, ids[-1], 1, 20)
    _check(ids, ids[5000], 1, 100)


def test_locator_returns_page_one_for_empty_store() -> None:
    fetcher = ListFetcher([])
    located = locate_resume_page(fetcher, 181_601, 9081, 20)
    assert located.page == 1
    assert located.page_data.is_empty
    assert located.fetches <= fetch_bound(9081, 1)


def test_locator_returns_page_one_when_target_is_none_or_below_first_id() -> None:
    ids = list(range(1000, 2000))
    assert locate_resume_page(ListFetcher(ids), None, 30, 20).page == 1
    _check(ids, 5, 30, 20)


def test_locator_finds_page_of_deleted_target_without_skipping_later_ids() -> None:
    ids = ids_with_gaps(2000)
    target = ids[1234]
    fetcher = ListFetcher(ids)
    fetcher.delete(target, ids[100], ids[101])  # the target and two earlier orders are gone
    located = locate_resume_page(fetcher, target, 1234 // 20 + 1, 20)
    assert located.page == resume_page(fetcher.ids, target, 20)
    later = [i for i in fetcher.ids if i > target]
    # Nothing above the target lies on a page before the resume page.
    assert all(i >= located.page_data.ids[0] for i in later)
    assert not located.holds_target


def test_locator_stops_at_full_last_page_when_next_page_is_empty() -> None:
    ids = list(range(1, 201))  # exactly 10 full pages of 20
    assert _check(ids, 200, 10, 20) == 1  # page 10 holds the target
    assert _check(ids, 250, 10, 20) == 2  # page 10 is full: page 11 (empty) must be seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1, 10_000_000),
    gaps=st.lists(st.integers(1, 40), max_size=2500),
    per_page=st.sampled_from([20, 100]),
    data=st.data(),
)
def test_locator_property_exact_page_and_bounded_fetches(
    start: int, gaps: list[int], per_page: int, data: st.DataObject
) -> None:
    ids = [start]
    for gap in gaps:
        ids.append(ids[-1] + gap)
    deleted = data.draw(st.sets(st.sampled_from(ids), max_size=min(30, len(ids))))
    served = [i for i in ids if i not in deleted]
    target = data.draw(
        st.one_of(
            st.sampled_from(ids),  # an id, maybe deleted since
            st.integers(max(0, start - 50), ids[-1] + 50),  # in a gap, below or beyond
            st.none(),
        )
    )
    last_page = max(1, -(-len(served) // per_page))
    hint = data.draw(
        st.one_of(
            st.just(1),
            st.integers(1, last_page + 3),
            st.integers(last_page, last_page * 50 + 100),  # past the end
            st.integers(1, 10**7),
        )
    )
    _check(served, target, hint, per_page)


@pytest.mark.parametrize("per_page", [20, 100])
def test_locator_bound_holds_for_every_hint_on_a_small_store(per_page: int) -> None:
    ids = ids_with_gaps(731, start=9000, every=5)
    for target in (ids[0], ids[300], ids[-1], ids[-1] + 10):
        for hint in range(1, 60):
            _check(ids, target, hint, per_page)
