"""Beside the original system: its Redis key and backup entry are written in pages of 20.

A first import reads 100 orders a page; the original, sharing the Redis key and the
backup file, reads ``lastPage`` as a page of 20. Stopped mid-import, what ecosync left
there must point the original at a page of 20 that holds ``firstId`` (not five times too
early, and never past an order), while ecosync's own page resumes its import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.adversarial.server import ORDERS_PATH
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, dialect, make_token

ORDERS = 1200
# Every call takes DELAY: the run's start (its position's verification call included)
# plus page 1 fit in BUDGET with room for a loaded machine, the 12 pages (2.4 s) never.
DELAY = 0.2
BUDGET = "1.2"


def test_first_import_writes_the_originals_fields_in_pages_of_20(
    cli_world: CliWorld, redis_url: str, case_row: Callable[..., None]
) -> None:
    store = AdversarialStore("ORIG", make_token(), list(range(1, ORDERS + 1)), delay=DELAY)
    cli_world.configure(store, extra={"import_per_page": 100})
    stopped = cli_world.sync("--budget-seconds", BUDGET)
    assert stopped.exit_code == 0, stopped.output
    assert "budget" in stopped.stdout
    raw = redis.Redis.from_url(redis_url).get("ecomanager:pageinfo:ORIG")
    assert raw is not None
    stored = json.loads(raw)
    backup = json.loads(Path(cli_world.env["ECOSYNC_BACKUP_PATH"]).read_text())["stores"]["ORIG"]
    assert stored["perPage"] == 100 and stored["ecosyncPage"] >= 2, stored
    # The original reads lastPage at 20 a page: that page must hold firstId.
    for entry in (stored, backup):
        page = httpx.get(
            cli_world.server.store_url("ORIG") + ORDERS_PATH,
            params={"page": entry["lastPage"], "per_page": 20},
            headers={"Authorization": f"Bearer {store.token}"},
        ).json()["data"]
        assert entry["firstId"] in [o["id"] for o in page], (entry, page[:1])
        assert entry["lastPage"] == (entry["ecosyncPage"] - 1) * 5 + 1
    # Ecosync's own page resumes the import at 100 a page, and nothing is missed.
    done = cli_world.sync()
    assert done.exit_code == 0, done.output
    lost = len(set(store.ids) - set(cli_world.stored("ORIG")))
    assert lost == 0
    case_row(
        f"first import beside the original ({dialect(cli_world.database_url)})",
        missing=lost,
        blocked=False,
        leaked=None,
        peak_mb=None,
        message=f"ecomanager:pageinfo:ORIG lastPage {stored['lastPage']} (pages of 20) for "
        f"ecosync's page {stored['ecosyncPage']} of 100, firstId {stored['firstId']}",
    )
