"""One partition per store, kept in step with the stores file without reloading the code.

The partitions are dynamic: the instance holds the store keys, and the
``store_partitions_sensor`` (and the sync schedule, before each tick) adds the stores
the file lists. A store removed from the file keeps its partition, so its run history
and materializations stay visible; it is no longer scheduled.

The schedule syncs the stores in batches, one run per batch: a run targets a range of
consecutive partition keys (the order in which the instance holds them), so a batch
never spans a store that left the file. ``sync_run_request`` is the run of one batch,
asked for by the sync schedule and by the webhook sensor (a store with a gap).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import (
    DagsterInstance,
    DynamicPartitionsDefinition,
    RunRequest,
    ScheduleEvaluationContext,
)

from ecosync_pipeline.defs.keys import (
    BATCH_TAG,
    NEW_ORDERS,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    STORE_PARTITIONS_NAME,
    STORE_TAG,
)

STORE_PARTITIONS = DynamicPartitionsDefinition(name=STORE_PARTITIONS_NAME)


def store_partitions() -> DynamicPartitionsDefinition:
    """The stores' partitions definition (one key per store ever configured)."""
    return STORE_PARTITIONS


def missing_stores(instance: DagsterInstance, configured: Iterable[str]) -> list[str]:
    """The configured stores the instance does not hold a partition for yet, in file order."""
    known = set(instance.get_dynamic_partitions(STORE_PARTITIONS_NAME))
    return [store for store in configured if store not in known]


def register_stores(instance: DagsterInstance, configured: Iterable[str]) -> list[str]:
    """Add a partition for each configured store that has none; return the ones added."""
    added = missing_stores(instance, configured)
    if added:
        instance.add_dynamic_partitions(STORE_PARTITIONS_NAME, added)
    return added


def tick_stamp(context: ScheduleEvaluationContext) -> str:
    """The tick's time for its runs' keys: the same tick evaluated twice starts nothing twice."""
    tick = context.scheduled_execution_time
    return tick.isoformat() if tick is not None else "manual"


@dataclass(frozen=True)
class StoreBatch:
    """Consecutive partition keys synced by one run: ``first`` to ``last``, both included."""

    stores: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.stores[0]

    @property
    def last(self) -> str:
        return self.stores[-1]

    @property
    def partition_key(self) -> str | None:
        """A lone store's run targets its partition; a run of several, a range (range_tags)."""
        return self.first if len(self.stores) == 1 else None

    def range_tags(self) -> dict[str, str]:
        """The tags that make a run target the partitions first..last (none for one store)."""
        if len(self.stores) == 1:
            return {}
        return {PARTITION_RANGE_START_TAG: self.first, PARTITION_RANGE_END_TAG: self.last}


MIN_BATCH_SIZE = 25
"""A tick is split across ``runs`` runs only while each gets at least this many stores:
a run's process start is worth it for 25 idle stores, not for 3."""


def batch_size_for(stores: int, size: int, runs: int) -> int:
    """The batch size that cuts ``stores`` into at least ``runs`` runs of at least
    MIN_BATCH_SIZE stores where there are enough of them, and never more than ``size``.

    A run is one process: at 100 stores a tick of one run of 100 uses one core, two runs
    of 50 use two and finish in about half the time.
    """
    if size < 1 or runs < 1:
        raise ValueError(f"batch size and runs must be at least 1, got {size} and {runs}")
    even = -(-stores // runs)
    return min(size, max(MIN_BATCH_SIZE, even))


def store_batches(
    partition_keys: Sequence[str], active: Iterable[str], size: int, runs: int = 1
) -> list[StoreBatch]:
    """Cut the active stores into runs of consecutive partition keys: at most ``size``
    each, and at least ``runs`` runs when there are enough stores (batch_size_for).

    ``partition_keys`` is the instance's order; a key not in ``active`` (a store removed
    from the file) ends the current batch, so no run's range includes it.
    """
    wanted = set(active)
    size = batch_size_for(len(wanted), size, runs)
    batches: list[StoreBatch] = []
    current: list[str] = []
    for key in partition_keys:
        if key not in wanted:
            if current:
                batches.append(StoreBatch(tuple(current)))
                current = []
            continue
        current.append(key)
        if len(current) == size:
            batches.append(StoreBatch(tuple(current)))
            current = []
    if current:
        batches.append(StoreBatch(tuple(current)))
    return batches


def sync_run_request(batch: StoreBatch, stamp: str, workers: int) -> RunRequest:
    """The sync run of one batch: a partition range, or one partition for a lone store.

    ``stamp`` names the tick (or slot) asking for it: the same one asked twice (a daemon
    restart) starts nothing twice. ``workers``: stores of the batch synced at once.
    """
    tags = {BATCH_TAG: f"{batch.first}..{batch.last}", **batch.range_tags()}
    if batch.partition_key is not None:
        tags[STORE_TAG] = batch.partition_key
    return RunRequest(
        run_key=f"{batch.first}..{batch.last}:{stamp}",
        partition_key=batch.partition_key,
        run_config={"ops": {NEW_ORDERS.to_user_string(): {"config": {"workers": workers}}}},
        tags=tags,
    )
