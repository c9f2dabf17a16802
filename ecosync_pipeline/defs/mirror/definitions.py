"""The mirror domain's definitions: reconciled_orders and order_statuses (one partition per
store), their jobs and their schedules."""

from __future__ import annotations

from dagster import Definitions

from ecosync_pipeline.defs.catalog import catalogued
from ecosync_pipeline.defs.mirror.assets import build_order_statuses, build_reconciled_orders
from ecosync_pipeline.defs.mirror.schedules import (
    build_reconcile_schedule,
    build_status_schedule,
    reconcile_orders_job,
    refresh_order_statuses_job,
)
from ecosync_pipeline.defs.options import LocationOptions
from ecosync_pipeline.defs.partitions import store_partitions


def build(options: LocationOptions) -> Definitions:
    """The domain's definitions, configured by ``options`` (no resources: the root's)."""
    partitions = store_partitions()
    return Definitions(
        assets=catalogued(
            [build_reconciled_orders(partitions), build_order_statuses(partitions)], options
        ),
        jobs=[reconcile_orders_job, refresh_order_statuses_job],
        schedules=[
            build_reconcile_schedule(options.reconcile_cron),
            build_status_schedule(options.status_cron),
        ],
    )
