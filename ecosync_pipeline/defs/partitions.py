"""One partition per store, kept in step with the stores file without reloading the code.

The partitions are dynamic: the instance holds the store keys. The code location registers
the stores the file lists as it loads (``register_at_load``: the dagster CLI works on a
fresh DAGSTER_HOME), and the ``store_partitions_sensor`` and the sync schedule, before
each tick, add any store added since. A store removed from the file keeps its partition
once a run synced it, so its run history and materializations stay visible; it is no
longer scheduled.

The schedule syncs the stores in batches, one run per batch: a run targets a range of
consecutive partition keys (the order in which the instance holds them), so a batch
never spans a store that left the file. ``sync_run_request`` is the run of one batch,
asked for by the sync schedule and by the webhook sensor (a store with a gap).

Every run of a store carries ``ecosync/store.<STORE>=1`` (``store_tags``): the runs asked
for here from their submission, the others (a backfill, the CLI, a restore) from their
first step (``tag_run_with_stores``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from dagster import (
    DagsterInstance,
    DagsterRun,
    DynamicPartitionsDefinition,
    Failure,
    RunRequest,
    ScheduleEvaluationContext,
)

from ecosync_pipeline.defs.keys import (
    BATCH_TAG,
    NEW_ORDERS,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    STORE_PARTITIONS_NAME,
    STORE_RUN_TAG_PREFIX,
    STORE_RUN_TAG_VALUE,
    STORE_TAG,
)

logger = logging.getLogger(__name__)
NAMED_IN_ERRORS = 10

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


def register_at_load(configured: Sequence[str], environ: Mapping[str, str] = os.environ) -> None:
    """Register the configured stores' partitions in the instance of DAGSTER_HOME, as the
    code location loads: `dagster asset materialize --partition STORE` and `dagster job
    backfill` then work on a fresh instance, before any sensor tick.

    Idempotent (only the stores without a partition are added). Without DAGSTER_HOME the
    dagster command uses a temporary instance this cannot reach: the first tick of
    store_partitions_sensor registers them there.
    """
    if not environ.get("DAGSTER_HOME"):
        logger.info(
            "DAGSTER_HOME is not set: the store partitions are registered by "
            "store_partitions_sensor's first tick (set DAGSTER_HOME for the dagster CLI)"
        )
        return
    try:
        with DagsterInstance.get() as instance:
            added = register_stores(instance, configured)
    except Exception as exc:  # loading must not fail over it: the sensor adds them
        logger.warning(
            "the store partitions were not registered as the code location loaded (%s: %s); "
            "store_partitions_sensor adds them on its next tick",
            type(exc).__name__,
            exc,
        )
        return
    if added:
        logger.info("registered the partitions of %d stores: %s", len(added), ", ".join(added))


def store_tags(stores: Iterable[str]) -> dict[str, str]:
    """The tags naming the stores of a run: ``ecosync/store.<STORE>=1`` for each, and
    ``ecosync/store=<STORE>`` for a run of one store."""
    chosen = list(stores)
    tags = {f"{STORE_RUN_TAG_PREFIX}{store}": STORE_RUN_TAG_VALUE for store in chosen}
    if len(chosen) == 1:
        tags[STORE_TAG] = chosen[0]
    return tags


def runs_link(store: str) -> str:
    """The Runs page filtered to every run of ``store`` (its tag), backfills' runs shown too:
    a path on the UI's own address, so the link works wherever the UI is served."""
    tag = f"tag:{STORE_RUN_TAG_PREFIX}{store}={STORE_RUN_TAG_VALUE}"
    return "/runs?" + urlencode({"view": "runs", "q[]": tag})


def tagged_stores(tags: Mapping[str, str]) -> list[str]:
    """The stores a run's tags name (``store_tags``), in the order of the tags."""
    return [
        key.removeprefix(STORE_RUN_TAG_PREFIX)
        for key, value in tags.items()
        if key.startswith(STORE_RUN_TAG_PREFIX) and value == STORE_RUN_TAG_VALUE
    ]


def tag_run_with_stores(instance: DagsterInstance, run: DagsterRun, stores: Iterable[str]) -> None:
    """Add to ``run`` the store tags it lacks: a backfill from the UI, `dagster asset
    materialize` or a restore launch runs without them."""
    missing = {k: v for k, v in store_tags(stores).items() if run.tags.get(k) != v}
    if missing:
        instance.add_run_tags(run.run_id, missing)


def no_store_failure(instance: DagsterInstance, run: DagsterRun) -> Failure:
    """The Failure of a run that targets no store: a partition range given backwards
    (`--partition-range PURNA...NATUR` when the file lists NATUR first) selects none."""
    start = run.tags.get(PARTITION_RANGE_START_TAG, "?")
    end = run.tags.get(PARTITION_RANGE_END_TAG, "?")
    order = list(instance.get_dynamic_partitions(STORE_PARTITIONS_NAME))
    shown = ", ".join(order[:NAMED_IN_ERRORS]) + (" ..." if len(order) > NAMED_IN_ERRORS else "")
    example = f", e.g. {order[0]}...{order[-1]} for every store" if order else ""
    return Failure(
        description=f"the partition range {start}...{end} holds no store, so nothing was "
        "synced: a range runs from its first store to its last in the order the stores file "
        f"lists them ({shown}). Give the range in that order{example}.",
        allow_retries=False,
    )


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
    tags = {
        BATCH_TAG: f"{batch.first}..{batch.last}",
        **batch.range_tags(),
        **store_tags(batch.stores),
    }
    return RunRequest(
        run_key=f"{batch.first}..{batch.last}:{stamp}",
        partition_key=batch.partition_key,
        run_config={"ops": {NEW_ORDERS.to_user_string(): {"config": {"workers": workers}}}},
        tags=tags,
    )
