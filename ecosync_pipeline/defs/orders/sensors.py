"""store_partitions_sensor: the stores file and the store partitions kept in step.

Every tick compares the stores file (parsed again only when it changes) with the
partitions the instance holds and adds a partition for each new store, so a store
appears in the UI, and can be materialized, without reloading the code location. A store
removed from the file keeps its partition and its history; the schedule no longer syncs
it, and the tick says so.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.keys import STORE_PARTITIONS_NAME
from ecosync_pipeline.defs.options import DEFAULT_INTERVAL_SECONDS
from ecosync_pipeline.defs.resources import EcoManagerResource


def build_store_partitions_sensor(
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> SensorDefinition:
    """The sensor adding a partition for each store of the stores file that has none."""

    @sensor(
        name="store_partitions_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Adds a new_orders partition for each store added to the stores file "
        "(no reload needed); removed stores keep their partition and history.",
    )
    def store_partitions_sensor(
        context: SensorEvaluationContext, ecomanager: EcoManagerResource
    ) -> SensorResult | SkipReason:
        with reported():
            configured = [store.identifier for store in ecomanager.stores()]
        known = context.instance.get_dynamic_partitions(STORE_PARTITIONS_NAME)
        known_set = set(known)
        added = [store for store in configured if store not in known_set]
        listed = set(configured)
        removed = [store for store in known if store not in listed]
        note = (
            f"; {len(removed)} stores no longer in the file keep their history and are not "
            f"synced: {', '.join(removed[:10])}{' ...' if len(removed) > 10 else ''}"
            if removed
            else ""
        )
        if not added:
            return SkipReason(f"{len(configured)} stores, all with a partition{note}")
        context.log.info("adding %d stores: %s%s", len(added), ", ".join(added[:20]), note)
        return SensorResult(
            dynamic_partitions_requests=[AddDynamicPartitionsRequest(STORE_PARTITIONS_NAME, added)]
        )

    return store_partitions_sensor
