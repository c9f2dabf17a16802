"""A deletion during a run on a server without ``meta``: the page sync skips an order,
the completeness audit names it, the reconciliation fetches it.

The simulator always sends ``meta``; the contract does not promise it, so this case runs
on the adversarial server: ids 1..100, 20 a page, order 30 deleted just before page 4
is served, which moves order 61 onto page 3, already read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.mirror import audit_window, reconcile_store
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import iter_order_ids
from ecosync_pipeline.storage.ranges import deleted_ids
from ecosync_pipeline.storage.store_state import last_sync_window
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.adversarial.server import Answer
from ecosync_pipeline_tests.test_adversarial.support import make_token


@dataclass
class DeletesMidRun(AdversarialStore):
    """Deletes ``victim`` just before answering request number ``at`` (1-based)."""

    victim: int = 0
    at: int = 0

    def answer(self, page: int, per_page: int, authorization: str) -> Answer:
        if len(self.requests) + 1 == self.at and self.victim in self.ids:
            self.ids.remove(self.victim)
        return super().answer(page, per_page, authorization)


@pytest.fixture
def runtime(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, DeletesMidRun]]:
    token = make_token()
    shop = DeletesMidRun("SHOP", token, list(range(1, 101)), meta=False, victim=30, at=4)
    monkeypatch.setenv("ECOSYNC_TOKEN_SHOP", token)
    with AdversarialServer() as server:
        server.serve(shop)
        store = Store(
            identifier="SHOP",
            name="Shop",
            base_url=server.store_url("SHOP"),
            token_env="ECOSYNC_TOKEN_SHOP",
            per_page=20,
            import_per_page=20,
            requests_per_second=1000.0,
        )
        settings = Settings(
            database_url=postgres_url,
            redis_url=redis_url,
            stores_file=str(tmp_path / "unused.yaml"),
            backup_path=str(tmp_path / "backup.json"),
        )
        rt = Runtime.from_settings(settings, stores=[store])
        try:
            yield rt, shop
        finally:
            rt.close()


def _audit(rt: Runtime) -> Any:
    window = last_sync_window(rt.engine, "SHOP")
    assert window is not None
    with rt.client(rt.store("SHOP")) as client:
        return audit_window(client, rt.engine, "SHOP", window)


def test_deletion_mid_run_without_meta_is_named_by_the_audit_and_repaired(
    runtime: tuple[Runtime, DeletesMidRun],
) -> None:
    rt, shop = runtime
    result = rt.sync("SHOP")
    assert result.reached_end
    stored = set(iter_order_ids(rt.engine, "SHOP"))
    # The skip, and the count that hides it: 99 served, 99 stored (30 is still there).
    assert 61 not in stored and 30 in stored and len(stored) == len(shop.ids)
    audit = _audit(rt)
    assert audit.missing_ranges == [(61, 61)] and not audit.proven_complete
    with rt.client(rt.store("SHOP")) as client:
        fixed = reconcile_store(rt.store("SHOP"), client=client, engine=rt.engine)
    assert (fixed.counts.missing, fixed.counts.flagged_deleted) == (1, 1)
    assert deleted_ids(rt.engine, "SHOP") == [30]
    live = set(iter_order_ids(rt.engine, "SHOP")) - {30}
    assert live == set(shop.ids)
    assert _audit(rt).proven_complete
