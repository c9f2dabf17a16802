"""What the alert rules observe, read from the Dagster instance.

Two streams, each read past where the last tick stopped (its place kept in the status
sensor's cursor):

- runs that ended (succeeded, failed or were canceled), by the storage id of their end
  event: each one's check results, and for a run of new_orders, each store's outcome
  (a materialization of its partition: synced; named by the run's failure, or targeted
  by a failed run and not synced: failed);
- check results recorded without a run (by cache_loss_sensor and the other sensors).

Both APIs work on every instance storage (SQLite's per-run shards included): run end
events and runless events are read with the cursors Dagster gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogEntry,
    EventLogRecord,
    RunStatusChangeRecordsFilter,
)

from ecosync_pipeline.alerts import CheckResult, Observation, StoreRun
from ecosync_pipeline.defs.keys import NEW_ORDERS, STORE_PARTITIONS_NAME, STORE_TAG, SYNC_ORDERS_JOB

RUN_ENDS = (
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
)
SYNC_JOB = SYNC_ORDERS_JOB
SYNC_STEP = "new_orders"
"""The step of new_orders (its multi_asset's name)."""
PARTITION_TAG = "dagster/partition"
# The tags Dagster gives a run of a partition range (a schedule batch, a backfill).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RUNLESS = ""
"""The run id of events recorded without a run (a sensor's asset events)."""
RUN_EVENTS = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.STEP_FAILURE,
}


def last_run_end(instance: DagsterInstance) -> int:
    """The storage id of the newest run end event (0 when no run ever ended)."""
    newest = 0
    for kind in RUN_ENDS:
        records = instance.fetch_run_status_changes(kind, limit=1).records
        if records:
            newest = max(newest, records[0].storage_id)
    return newest


def runs_ended_after(instance: DagsterInstance, after: int, limit: int) -> list[EventLogRecord]:
    """The first ``limit`` run end events after storage id ``after``, oldest first."""
    found: list[EventLogRecord] = []
    for kind in RUN_ENDS:
        wanted = RunStatusChangeRecordsFilter(event_type=kind, after_storage_id=after)
        found += instance.fetch_run_status_changes(wanted, limit=limit, ascending=True).records
    return sorted(found, key=lambda r: r.storage_id)[:limit]


def runless_cursor(instance: DagsterInstance) -> str | None:
    """The place of the newest check result recorded without a run (None: there is none)."""
    newest = instance.get_records_for_run(
        RUNLESS, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=1, ascending=False
    )
    return newest.cursor if newest.records else None


def runless_checks(
    instance: DagsterInstance, cursor: str | None, limit: int
) -> tuple[list[CheckResult], str | None]:
    """Check results recorded without a run after ``cursor``, and the cursor after them."""
    page = instance.get_records_for_run(
        RUNLESS, cursor=cursor, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=limit
    )
    results = [r for r in (check_result(x.event_log_entry) for x in page.records) if r]
    return results, (page.cursor if page.records else cursor)


def run_observations(instance: DagsterInstance, end: EventLogRecord) -> list[Observation]:
    """The check results of the run that ``end`` ended, and its stores' sync outcomes."""
    run = instance.get_run_by_id(end.event_log_entry.run_id)
    if run is None:
        return []
    entries = instance.all_logs(run.run_id, of_type=RUN_EVENTS)
    found: list[Observation] = [r for r in (check_result(e) for e in entries) if r]
    if is_sync_run(run, entries):
        failed = end.event_log_entry.dagster_event_type == DagsterEventType.RUN_FAILURE
        found += store_runs(instance, run, entries, failed, end.event_log_entry.timestamp)
    return found


def is_sync_run(run: DagsterRun, entries: Sequence[EventLogEntry]) -> bool:
    """A run that synced new_orders (the schedule's, a Materialize, a backfill): by its
    job or selection, else by its events (a job holding the asset with others)."""
    if run.job_name == SYNC_JOB or NEW_ORDERS in (run.asset_selection or ()):
        return True
    return any(
        e.step_key == SYNC_STEP
        or ((m := e.asset_materialization) is not None and m.asset_key == NEW_ORDERS)
        for e in entries
    )


def store_runs(
    instance: DagsterInstance,
    run: DagsterRun,
    entries: Sequence[EventLogEntry],
    failed: bool,
    ended: float,
) -> list[StoreRun]:
    """Each store's outcome in a new_orders run: synced, or failed with its reason."""
    synced = {
        m.partition
        for e in entries
        if (m := e.asset_materialization) is not None
        and m.asset_key == NEW_ORDERS
        and m.partition is not None
    }
    outcomes = [StoreRun(s, True, run.run_id, ended) for s in sorted(synced)]
    if not failed:
        return outcomes
    failures = step_failures(entries)
    reasons = failure_reasons(failures)
    if not reasons:
        # The run failed without naming a store (a crash, a lost process): every store
        # it targeted and did not sync failed with it.
        why = next(iter(failure_texts(failures)), "the run failed before syncing it")
        reasons = {s: why for s in targeted_stores(instance, run) if s not in synced}
    outcomes += [StoreRun(s, False, run.run_id, ended, r) for s, r in reasons.items()]
    return outcomes


def targeted_stores(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """The stores a run targeted: its partition, its partition range, or its store tag."""
    tags = run.tags
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start is not None and end is not None:
        keys = list(instance.get_dynamic_partitions(STORE_PARTITIONS_NAME))
        if start in keys and end in keys:
            return keys[keys.index(start) : keys.index(end) + 1]
    return [tags[STORE_TAG]] if STORE_TAG in tags else []


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def step_failures(entries: Iterable[EventLogEntry]) -> list[DagsterEvent]:
    """The step failure events among a run's entries."""
    events = (e.dagster_event for e in entries)
    return [e for e in events if e is not None and e.event_type == DagsterEventType.STEP_FAILURE]


def failure_texts(failures: Iterable[DagsterEvent]) -> list[str]:
    """The description (or error message) of each step failure of a run."""
    texts = []
    for event in failures:
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and user.description:
            texts.append(user.description)
        elif data.error is not None:
            texts.append(data.error.message.strip())
    return texts


def failure_reasons(failures: Iterable[DagsterEvent]) -> dict[str, str]:
    """The stores a run's failures name (their metadata), each with its own reason."""
    reasons: dict[str, str] = {}
    for event in failures:
        user = event.step_failure_data.user_failure_data
        if user is None:
            continue
        description = user.description or ""
        for store in failed_stores(user.metadata):
            reasons[store] = reason_for(store, description)
    return reasons


def failed_stores(metadata: Mapping[str, Any]) -> list[str]:
    """The stores a failure's metadata names: ``store``, ``failed_stores`` or the failed
    rows of a ``positions`` table (a recovery's)."""
    if "store" in metadata:
        return [str(_value(metadata["store"]))]
    if "failed_stores" in metadata:
        return [s.strip() for s in str(_value(metadata["failed_stores"])).split(",") if s.strip()]
    return [
        str(row["store"])
        for row in table_rows(metadata.get("positions"))
        if str(row.get("result", "")).startswith("failed")
    ]


def reason_for(store: str, description: str) -> str:
    """The line of a failure's description about ``store`` (a batch names each), else all."""
    for line in description.splitlines():
        if f"store {store}:" in line or line.lstrip("- ").startswith(f"{store}:"):
            return line.lstrip("- ").strip()
    return description.strip()


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value, as dicts ([] for anything else)."""
    records = getattr(_value(value), "records", None) or []
    return [dict(r.data) for r in records if hasattr(r, "data")]


def check_result(entry: EventLogEntry) -> CheckResult | None:
    """An asset check evaluation as the rules read it (None for any other event)."""
    evaluation = entry.asset_check_evaluation
    if evaluation is None:
        return None
    metadata = evaluation.metadata
    what = metadata.get("what_to_do")
    return CheckResult(
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        partition=evaluation.partition,
        passed=evaluation.passed,
        error=evaluation.severity.value == "ERROR",
        timestamp=entry.timestamp,
        description=evaluation.description or "",
        what_to_do=str(_value(what)) if what is not None else None,
        stores=named_stores(evaluation.partition, metadata),
    )


def named_stores(partition: str | None, metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The stores a failing result is about: its partition, the rows of its ``stores``
    table at severity error, or its ``stores_needing_attention``."""
    if partition is not None:
        return (partition,)
    rows = [r for r in table_rows(metadata.get("stores")) if r.get("severity") == "error"]
    if rows:
        return tuple(str(r["store"]) for r in rows)
    attention = metadata.get("stores_needing_attention")
    if attention is not None:
        return tuple(s.strip() for s in str(_value(attention)).split(",") if s.strip())
    return ()
