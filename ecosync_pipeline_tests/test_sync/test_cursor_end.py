"""A newest-first read the server ends early is refused, never taken as the store's end.

Against the adversarial server (another server of the contract, over real HTTP), whose
cursor can end (``next_cursor`` null) after a given page whatever ids are left: the read
is confirmed with one call, refused with ContractViolation naming the store, the
frontier stays where it was and the completeness check is an ERROR. Once the server
carries its cursor on, the next run completes the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity

from ecosync_pipeline.config import Settings, Store, validate_store_identifier
from ecosync_pipeline.defs.orders.checks import completeness_evaluation
from ecosync_pipeline.errors import ContractViolation
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import iter_order_ids, store_summary
from ecosync_pipeline.storage.store_state import read_cursor_read, read_frontier
from ecosync_pipeline.sync.batch import audit_last_window, count_served
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import make_token

STORE = validate_store_identifier("EARLY")
TOKEN_ENV = "ECOSYNC_TEST_TOKEN_EARLY"


@pytest.fixture(scope="module")
def adversarial() -> Iterator[AdversarialServer]:
    with AdversarialServer() as server:
        yield server


@pytest.fixture
def runtime(
    adversarial: AdversarialServer,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Runtime, AdversarialStore]]:
    """A cursor-mode store of 1,000 orders on the adversarial server, and a Runtime for it."""
    quirky = AdversarialStore(STORE, make_token(), list(range(1, 1001)))
    adversarial.serve(quirky)
    store = Store(
        identifier=STORE,
        name="Early",
        base_url=adversarial.store_url(STORE),
        token_env=TOKEN_ENV,
        requests_per_second=1000.0,
        read_mode="cursor",
    )
    monkeypatch.setenv(TOKEN_ENV, quirky.token)
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        stores_file=str(tmp_path / "unused.yaml"),
        backup_path=str(tmp_path / "sync-positions.json"),
    )
    rt = Runtime.from_settings(settings, stores=[store])
    try:
        yield rt, quirky
    finally:
        rt.close()


def _check(rt: Runtime) -> tuple[bool, AssetCheckSeverity, str | None]:
    summary = store_summary(rt.engine, STORE)
    evaluation = completeness_evaluation(
        summary, count_served(rt, summary), audit_last_window(rt, summary)
    )
    return evaluation.passed, evaluation.severity, evaluation.description


def test_first_import_whose_cursor_ends_after_page_1_is_refused_and_the_check_errors(
    runtime: tuple[Runtime, AdversarialStore],
) -> None:
    rt, quirky = runtime
    quirky.cursor_ends_after = 1
    with pytest.raises(ContractViolation, match=f"store {STORE}: .*order id 1 below it") as err:
        rt.sync(STORE)
    assert err.value.store == STORE and "frontier stays at None" in str(err.value)
    # The page read is kept, and nothing of it is claimed complete.
    assert len(set(iter_order_ids(rt.engine, STORE))) == 100
    assert read_frontier(rt.engine, STORE) is None
    under_way = read_cursor_read(rt.engine, STORE)
    assert under_way is not None and under_way.refused is not None
    passed, severity, description = _check(rt)
    assert (passed, severity) == (False, AssetCheckSeverity.ERROR), description
    assert description is not None and "order id 1 below it" in description

    # The next run reads the last page again and confirms: still refused, two calls.
    quirky.requests.clear()
    with pytest.raises(ContractViolation):
        rt.sync(STORE)
    assert len(quirky.requests) == 2 and read_frontier(rt.engine, STORE) is None

    # The server carries its cursor on again: the read completes, nothing missing.
    quirky.cursor_ends_after = None
    result = rt.sync(STORE)
    assert result.reached_end and read_frontier(rt.engine, STORE) == 1000
    assert set(iter_order_ids(rt.engine, STORE)) == set(range(1, 1001))
    assert _check(rt)[0]


def test_incremental_read_whose_cursor_ends_above_the_frontier_leaves_the_frontier(
    runtime: tuple[Runtime, AdversarialStore],
) -> None:
    rt, quirky = runtime
    rt.sync(STORE)
    assert read_frontier(rt.engine, STORE) == 1000
    quirky.ids += list(range(1001, 1301))
    quirky.cursor_ends_after = 1
    with pytest.raises(ContractViolation, match="frontier stays at 1000"):
        rt.sync(STORE)
    assert read_frontier(rt.engine, STORE) == 1000
    assert max(iter_order_ids(rt.engine, STORE)) == 1300  # the page read is kept
    quirky.cursor_ends_after = None
    assert rt.sync(STORE).reached_end
    assert set(iter_order_ids(rt.engine, STORE)) == set(range(1, 1301))
    assert read_frontier(rt.engine, STORE) == 1300
