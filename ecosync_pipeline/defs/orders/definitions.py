"""The orders domain's definitions: new_orders (one partition per store) with its
completeness and freshness checks, the sync job, its schedule and the sensor that keeps
the store partitions in step with the stores file (and records a store turning stale)."""

from __future__ import annotations

from dagster import Definitions

from ecosync_pipeline.defs.catalog import catalogued, new_orders_freshness
from ecosync_pipeline.defs.keys import NEW_ORDERS
from ecosync_pipeline.defs.options import LocationOptions
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.orders.schedules import build_order_sync_schedule, sync_orders_job
from ecosync_pipeline.defs.orders.sensors import build_store_partitions_sensor
from ecosync_pipeline.defs.partitions import store_partitions


def build(options: LocationOptions) -> Definitions:
    """The domain's definitions, configured by ``options`` (no resources: the root's)."""
    new_orders = build_new_orders(store_partitions(), options.freshness_minutes)
    freshness = {NEW_ORDERS: new_orders_freshness(options.freshness_minutes)}
    return Definitions(
        assets=catalogued([new_orders], options, freshness),
        jobs=[sync_orders_job],
        schedules=[
            build_order_sync_schedule(
                options.sync_cron,
                batch_size=options.batch_size,
                workers=options.workers,
                runs=options.runs,
            )
        ],
        sensors=[
            build_store_partitions_sensor(
                options.sensor_interval_seconds, options.freshness_minutes
            )
        ],
    )
