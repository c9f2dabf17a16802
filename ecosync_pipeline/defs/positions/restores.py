"""The restores under way, as the instance lists them: runs of recover_sync_positions and
runs that materialize restored_sync_positions (the restore button, the CLI).

One restore at a time, whatever launched it: cache_loss_sensor launches no recovery while
one is under way; a restore that finds an earlier one under way does not restore beside
it (the restore button steps aside at once, since it holds the positions pool; the
recovery job waits for it to end, then finds nothing left to do). Each names the run it
defers to, and so do the recommendation and the checks while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunRecord, RunsFilter

from ecosync_pipeline.defs.keys import (
    RECOVER_SYNC_POSITIONS_JOB,
    RECOVERY_TAG,
    RESTORED_SYNC_POSITIONS,
)

UNDER_WAY = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
"""A run in these states will restore positions, or is restoring them."""
LOOKED_AT = 200
"""Runs under way looked at (newest first) for restores launched by hand."""
WAIT_SECONDS = 600.0
"""How long the recovery job waits for an earlier restore before going ahead anyway."""
STALE_SECONDS = 1800.0
"""A restore under way for longer is taken for dead (a run worker killed without its run
being marked): it holds no other restore back, so a loss is never left to wait on it."""


def is_restore(run: DagsterRun) -> bool:
    """The run restores every store's position: the recovery job, or a materialization
    of restored_sync_positions (launched from the UI, the CLI or a schedule)."""
    return (
        run.job_name == RECOVER_SYNC_POSITIONS_JOB
        or run.tags.get(RECOVERY_TAG) == "true"
        or RESTORED_SYNC_POSITIONS in (run.asset_selection or ())
    )


def restores_under_way(
    instance: DagsterInstance, *, other_than: str | None = None
) -> list[RunRecord]:
    """The restores queued or running (oldest first), ``other_than`` this run, launched in
    the last half hour."""
    jobs = instance.get_run_records(
        filters=RunsFilter(job_name=RECOVER_SYNC_POSITIONS_JOB, statuses=UNDER_WAY)
    )
    any_run = instance.get_run_records(filters=RunsFilter(statuses=UNDER_WAY), limit=LOOKED_AT)
    since = time.time() - STALE_SECONDS
    found = {
        r.dagster_run.run_id: r
        for r in [*jobs, *any_run]
        if r.dagster_run.run_id != other_than
        and is_restore(r.dagster_run)
        and r.create_timestamp.timestamp() >= since
    }
    return sorted(found.values(), key=lambda r: (r.create_timestamp, r.storage_id))


def earlier_restores(instance: DagsterInstance, run_id: str) -> list[RunRecord]:
    """The restores under way that were launched before the run ``run_id``."""
    mine = instance.get_run_record_by_id(run_id)
    others = restores_under_way(instance, other_than=run_id)
    if mine is None:
        return others
    return [
        r
        for r in others
        if (r.create_timestamp, r.storage_id) < (mine.create_timestamp, mine.storage_id)
    ]


def named(record: RunRecord) -> str:
    """'run 48a7f1c2 of recover_sync_positions (started)', or '... of the restore button'."""
    run = record.dagster_run
    what = (
        RECOVER_SYNC_POSITIONS_JOB
        if run.job_name == RECOVER_SYNC_POSITIONS_JOB
        else f"{RESTORED_SYNC_POSITIONS.to_user_string()} (a restore by hand)"
    )
    return f"run {run.run_id[:8]} of {what} ({run.status.value.lower().replace('_', ' ')})"


def under_way_said(records: list[RunRecord]) -> str:
    """The restore under way as the advice says it, '' when none."""
    if not records:
        return ""
    return f"{named(records[0])} is restoring them"


def wait_for_earlier(
    instance: DagsterInstance,
    run_id: str,
    log: Callable[[str], None],
    *,
    timeout: float = WAIT_SECONDS,
    poll: float = 1.0,
) -> list[str]:
    """Wait until no restore launched before ``run_id`` is under way; the runs waited for.

    Gives up after ``timeout`` seconds (logging it) rather than hold a recovery forever
    behind a run stuck in the queue.
    """
    waited: list[str] = []
    deadline = time.monotonic() + timeout
    while earlier := earlier_restores(instance, run_id):
        if not waited or earlier[0].dagster_run.run_id != waited[-1]:
            waited.append(earlier[0].dagster_run.run_id)
            log(f"{named(earlier[0])} is restoring the positions: waiting for it to end")
        if time.monotonic() > deadline:
            log(f"still waiting after {timeout:.0f} s: going ahead beside {named(earlier[0])}")
            break
        time.sleep(poll)
    return waited
