"""One story per cache loss (positions.story), without Dagster: the line an operator
reads, and which restores make a story at all."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.positions.outcomes import LayerPositions, RestoreReport
from ecosync_pipeline.positions.story import LossStory, restored_story

SEEN = datetime(2026, 11, 25, 2, 15, 3, tzinfo=timezone.utc)


def position(store: str, page: int, target: int, source: str = "json") -> SyncPosition:
    return SyncPosition(store, store, page, target - 19, target, target, SEEN, source)  # type: ignore[arg-type]


def report(store: str, source: str, redis: SyncPosition | None) -> RestoreReport:
    after = position(store, 5, 100, source)
    return RestoreReport(
        store=store,
        before=LayerPositions(redis=redis, json=after, database=after),
        after=after,
        restored_from=source,  # type: ignore[arg-type]
        api_calls=1,
    )


def test_a_restored_loss_reads_when_which_stores_from_where_by_which_run_and_how_long() -> None:
    reports = [report(s, "json", None) for s in ("NATUR", "PURNA", "DILST", "ECOBI", "FERME")]
    story = restored_story(
        "flushed:g1",
        SEEN,
        reports,
        redis_state="flushed",
        run_id="48a7f1c2-0000-4000-8000-000000000000",
        restored_at=SEEN + timedelta(seconds=8),
    )
    assert story is not None
    assert story.line(SEEN) == (
        "last loss 02:15:03 UTC, 5 stores (NATUR, PURNA, DILST, ECOBI, FERME), restored "
        "from the backup by run 48a7f1c2 in 8 s"
    )
    # Read a day later, the date is said too.
    assert story.line(SEEN + timedelta(days=1)).startswith("last loss 2026-11-25 02:15:03 UTC")


def test_a_restore_from_several_layers_counts_each_and_names_only_the_restored_stores() -> None:
    healthy = position("OKAY", 5, 100, "redis")
    reports = [
        report("NATUR", "json", None),
        report("PURNA", "database", None),
        report("DILST", "json", None),
        report("OKAY", "redis", healthy),  # already healthy: not part of the loss
    ]
    story = restored_story(
        "missing:g:1:d", SEEN, reports, redis_state="ok", run_id="r1", restored_at=SEEN
    )
    assert story is not None and story.stores == ("NATUR", "PURNA", "DILST")
    assert "from the backup (2) and the orders database (1)" in story.line(SEEN)


def test_a_restore_that_found_every_store_healthy_is_no_story() -> None:
    healthy = [report(s, "redis", position(s, 5, 100, "redis")) for s in ("NATUR", "PURNA")]
    assert (
        restored_story("none", SEEN, healthy, redis_state="ok", run_id="r", restored_at=SEEN)
        is None
    )


def test_a_loss_under_way_names_its_stores_and_the_restore_running() -> None:
    story = LossStory("flushed:g1", SEEN, ("NATUR", "PURNA"), redis_state="flushed")
    assert story.seconds is None
    assert story.line(
        SEEN, "run 48a7f1c2 of recover_sync_positions (started) is restoring them"
    ) == (
        "loss 02:15:03 UTC, 2 stores (NATUR, PURNA) without a position (Redis flushed): run "
        "48a7f1c2 of recover_sync_positions (started) is restoring them"
    )
    assert story.line(SEEN).endswith(": not restored yet")
