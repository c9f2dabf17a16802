"""The server checked, never followed blindly (`ecosync sync` against misbehaving servers).

A short page is not the end unless an empty page or meta.last_page says so; a server
serving smaller pages is followed at its size; a page served twice or ids going back
across pages stop the store with a ContractViolation naming store and page, and the
position stays at the last good page. After each, the next good run misses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import (
    CliWorld,
    dialect,
    leaked,
    make_token,
)

# case: (the store's quirks, how many orders)
FOLLOWED: dict[str, tuple[dict[str, Any], int]] = {
    "page 8 served 19 of 20 once": ({"short": {8: 1}}, 299),
    "page 8 served 19 of 20 once, no meta": ({"short": {8: 1}, "meta": False}, 299),
    "per_page capped at 15": ({"per_page_cap": 15}, 200),
    "per_page capped at 15, no meta": ({"per_page_cap": 15, "meta": False}, 200),
}


@pytest.mark.parametrize("case", list(FOLLOWED))
def test_short_pages_are_read_past_and_no_order_is_skipped(
    case: str,
    cli_world: CliWorld,
    case_row: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    quirks, count = FOLLOWED[case]
    store = AdversarialStore("SHORT", make_token(), list(range(1, count + 1)), **quirks)
    cli_world.configure(store)
    result = cli_world.sync()
    assert result.exit_code == 0, result.output
    lost = len(set(store.ids) - set(cli_world.stored("SHORT")))
    assert lost == 0
    # One request a page, give or take the few that tell a short page from the end.
    assert len(store.requests) <= count // min(20, quirks.get("per_page_cap", 20)) + 4
    message = next(
        r.getMessage()
        for r in caplog.records
        if "page 1: the server" in r.getMessage() or "of 20 orders" in r.getMessage()
    )
    store.ids += list(range(count + 1, count + 26))
    again = cli_world.sync()
    assert again.exit_code == 0, again.output
    lost = len(set(store.ids) - set(cli_world.stored("SHORT")))
    assert lost == 0
    if cli_world.database_url.startswith("postgresql"):
        case_row(
            case,
            missing=lost,
            blocked=False,
            leaked=leaked(result.output + again.output, store.token),
            peak_mb=None,
            message=message,
        )


REFUSED: dict[str, tuple[list[int], dict[str, Any], str]] = {
    "ids decreasing across pages": (
        [*range(15000, 15020), *range(41, 61)],
        {},
        "store BACK: page 2: order ids go back across pages: page 1 ended at id 15019",
    ),
    "page parameter ignored": (
        list(range(1, 41)),
        {"ignore_page": True},
        "store BACK: page 2: page 2 repeats page 1",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_contradicting_pages_stop_the_store_at_the_last_good_page(
    case: str, cli_world: CliWorld, case_row: Callable[..., None]
) -> None:
    ids, quirks, expected = REFUSED[case]
    store = AdversarialStore("BACK", make_token(), list(ids), **quirks)
    cli_world.configure(store)
    result = cli_world.sync()
    assert result.exit_code == 1
    assert "ContractViolation" in result.stderr and expected in result.stderr, result.stderr
    assert "The position stays at page 1" in result.stderr
    assert len(store.requests) <= 3  # refused at once, not followed for 600 s
    assert set(cli_world.stored("BACK")) == set(ids[:20])  # nothing of the bad page written
    # The next good run, the server mended (ids ascending, pages honoured). Orders it now
    # serves below the position (41..60 behind 15019) are found by the id-range audit.
    store.ids, store.ignore_page = sorted(ids), False
    again = cli_world.sync()
    assert again.exit_code == 0, again.output
    audit = cli_world.run("reconcile", "--store", "BACK")
    assert audit.exit_code == 0, audit.output
    lost = len(set(ids) - set(cli_world.stored("BACK")))
    assert lost == 0
    reason = next(line for line in result.stderr.splitlines() if line.startswith("BACK "))
    case_row(
        f"{case} ({dialect(cli_world.database_url)})",
        missing=lost,
        blocked=False,
        leaked=leaked(result.output + again.output, store.token),
        peak_mb=None,
        message=" ".join(reason.split()[1:]),
    )
