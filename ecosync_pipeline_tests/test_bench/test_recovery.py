"""bench recovery in a tiny form: real sync runs over HTTP, real Redis and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from ecosync_pipeline.lab.bench import RecoveryReport, RecoveryRow, run_recovery_bench
from ecosync_pipeline.lab.bench import recovery as recovery_module
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline_tests.conftest import REDIS_MARKER, TEST_POSTGRES_ADMIN_URL

NATUR_LIKE = StoreSpec("NATUR", first_id=1, last_id=3000, gap_rate=0.03)
PURNA_LIKE = StoreSpec("PURNA", first_id=500_000, count=600, stride=7, gap_rate=0.03)


def _rows(report: RecoveryReport, store: str, strategy: str) -> list[RecoveryRow]:
    return [r for r in report.rows if r.store == store and r.strategy == strategy]


def test_recovery_bench_ecosync_resumes_exactly_and_the_old_strategies_do_not(
    redis_url: str,
) -> None:
    report = run_recovery_bench(
        ks=(0, 15),
        specs=(NATUR_LIKE, PURNA_LIKE),
        redis_url=redis_url,
        redis_marker=REDIS_MARKER,
        postgres_admin_url=TEST_POSTGRES_ADMIN_URL,
    )
    # 2 stores x 2 k x (ecosync for each loss, page-1 restart, old fix)
    assert len(report.rows) == 16
    for row in (r for r in report.rows if r.strategy == "ecosync"):
        assert (row.missing, row.duplicates) == (0, 0), row
        assert row.within_bound and row.calls <= row.bound, row
        assert row.source == ("json" if row.loss == "redis" else "database"), row
    for store in ("NATUR", "PURNA"):
        orders = report.stores[store]["orders"]
        for row in _rows(report, store, "page-1 restart"):
            # It reads every page again, and every order already stored.
            assert row.calls >= row.true_page + row.k // 20
            assert row.duplicates == orders and row.missing == 0
            assert not row.within_bound
    [purna_fix] = [r for r in _rows(report, "PURNA", "old fix") if r.k == 15]
    assert purna_fix.missing == 15 and not purna_fix.within_bound
    assert purna_fix.start_page > purna_fix.true_page  # id / 20 overshoots the last page
    [replayed] = [r for r in _rows(report, "NATUR", "page-1 restart") if r.k == 15]
    assert replayed.timing == "http+replay"
    table = report.table()
    assert "within bound" in table and "page-1 restart" in table and "old fix" in table
    data = json.loads(json.dumps(report.as_dict()))
    assert data["benchmark"] == "recovery" and len(data["rows"]) == 16
    assert {"calls", "seconds", "missing", "duplicates", "err", "bound"} <= set(data["rows"][0])


def test_recovery_bench_quick_extrapolates_the_restart_but_counts_it_exactly(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery_module, "QUICK_REAL_PAGES", 5)
    report = run_recovery_bench(
        quick=True,
        ks=(15,),
        specs=(PURNA_LIKE,),
        redis_url=redis_url,
        redis_marker=REDIS_MARKER,
        backend="sqlite",
        separate_process=False,
    )
    [restart] = _rows(report, "PURNA", "page-1 restart")
    assert restart.timing == "extrapolated"
    assert restart.calls == report.stores["PURNA"]["pages"] + 1
    assert restart.duplicates == 600 and restart.missing == 0
    assert all(r.missing == 0 for r in _rows(report, "PURNA", "ecosync"))
