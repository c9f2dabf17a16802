"""The positions' health judged from a status report: thresholds, severities and advice
(positions.judging), without Dagster. The Dagster layer's rendering of the same verdicts
is tested in test_defs (test_positions_assets, test_sensor)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from ecosync_pipeline.positions.health import StatusReport, StoreStatus
from ecosync_pipeline.positions.judging import (
    Remedy,
    judge_cache_health,
    judge_layer_agreement,
    judge_position_health,
    recommendation,
)
from ecosync_pipeline.positions.loss import LossReport, RedisState
from ecosync_pipeline.positions.model import PositionStatus, SyncPosition

CLI = Remedy(restore="run `ecosync positions restore`")
UI = Remedy(
    restore="Materialize restored_sync_positions",
    automatic="the cache_loss_sensor then restores every position by itself",
)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def position(store: str, page: int, target: int) -> SyncPosition:
    return SyncPosition(store, store, page, target - 19, target, target, AT, "redis")


def row(store: str, status: PositionStatus, last_id: int = 100) -> StoreStatus:
    cached = None if status == "missing" else position(store, 5, last_id)
    return StoreStatus(
        store=store,
        name=store,
        redis=cached,
        json=position(store, 5, last_id),
        db_last_order_id=last_id,
        db_order_count=last_id,
        status=status,
        json_status="healthy",
    )


def report(*rows: StoreStatus, redis_state: RedisState = "ok") -> StatusReport:
    healthy = sum(1 for r in rows if r.status in ("healthy", "calculated"))
    loss = LossReport(redis_state, (), (), None, None, "", len(rows))
    return StatusReport(rows, healthy / len(rows), redis_state, loss, "/backup.json")


def test_advice_names_the_restore_action_in_the_words_of_its_reader() -> None:
    lost = report(row("A", "missing"), row("B", "healthy"))
    assert recommendation(lost, CLI) == (
        "1 store needs its position restored (A): run `ecosync positions restore`."
    )
    assert recommendation(lost, UI) == (
        "1 store needs its position restored (A): Materialize restored_sync_positions."
    )
    down = report(row("A", "healthy"), redis_state="unreachable")
    assert recommendation(down, UI).endswith(
        "; the cache_loss_sensor then restores every position by itself, or Materialize "
        "restored_sync_positions."
    )
    assert recommendation(down, CLI).endswith("; then run `ecosync positions restore`.")


def test_cache_health_passes_from_80_percent_of_stores_healthy() -> None:
    four_of_five = report(*(row(s, "healthy") for s in "ABCD"), row("E", "missing"))
    three_of_five = report(*(row(s, "healthy") for s in "ABC"), *(row(s, "stale") for s in "DE"))
    passed = judge_cache_health(four_of_five, CLI)
    assert passed.passed and passed.facts["cache_health_percent"] == 80.0
    failed = judge_cache_health(three_of_five, CLI)
    assert not failed.passed and failed.severity == "warn" and failed.advise
    assert failed.facts["stores_needing_attention"] == "D, E"


def test_cache_health_is_an_error_below_half_the_stores_and_for_a_total_loss() -> None:
    half = report(row("A", "healthy"), row("B", "missing"))
    assert judge_cache_health(half, CLI).severity == "warn"
    one_of_three = report(row("A", "healthy"), row("B", "missing"), row("C", "missing"))
    assert judge_cache_health(one_of_three, CLI).severity == "error"
    total = judge_cache_health(report(row("A", "missing"), row("B", "missing")), UI)
    assert not total.passed and total.severity == "error"
    assert "an error below 50%" in total.description


def test_advice_names_the_restore_under_way_instead_of_asking_for_another() -> None:
    waiting = replace(
        UI, under_way="run 48a7f1c2 of recover_sync_positions (started) is restoring them"
    )
    lost = report(row("A", "missing"), row("B", "stale"))
    advice = recommendation(lost, waiting)
    assert advice.startswith(
        "1 store needs its position restored (A): run 48a7f1c2 of recover_sync_positions "
        "(started) is restoring them: no click needed."
    )
    assert "Materialize" not in advice
    verdict = judge_position_health(lost, waiting)
    assert "run 48a7f1c2" in verdict.description and "Materialize" not in verdict.description


def test_position_health_is_an_error_for_a_lost_store_and_a_warning_for_a_stale_one() -> None:
    verdict = judge_position_health(
        report(row("A", "missing"), row("B", "stale"), row("C", "healthy")), CLI
    )
    assert not verdict.passed and verdict.severity == "error"
    assert verdict.facts == {"errors": 1, "warnings": 1}
    assert verdict.description.startswith("ERROR: A (missing); WARN: B (stale).")
    assert [r["severity"] for r in verdict.rows] == ["error", "warn", "ok"]
    stale_only = judge_position_health(report(row("B", "stale")), CLI)
    assert stale_only.severity == "warn"


def test_layers_that_name_different_last_orders_disagree() -> None:
    ahead = replace(row("A", "healthy"), db_last_order_id=120)
    verdict = judge_layer_agreement(report(ahead, row("B", "healthy")), CLI)
    assert not verdict.passed and verdict.facts == {"disagreeing": 1}
    assert verdict.description.startswith("layers disagree for A; the database is the truth.")
