"""The code location: Definitions assembled from ecosync_pipeline.defs, nothing else.

Dagster loads ``defs`` lazily: the environment is read when the code location loads,
never at import. The stores file gives the partitions then, so reload the code location
after editing it. Tests call ``build_definitions`` with their own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import Definitions, definitions

from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.orders.checks import build_new_orders_check
from ecosync_pipeline.defs.orders.schedules import (
    DEFAULT_SYNC_CRON,
    build_order_sync_schedule,
    sync_orders_job,
)
from ecosync_pipeline.defs.partitions import store_partitions
from ecosync_pipeline.defs.positions.assets import restored_sync_positions, store_sync_positions
from ecosync_pipeline.defs.positions.checks import position_checks
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import (
    DEFAULT_INTERVAL_SECONDS,
    build_cache_loss_sensor,
)
from ecosync_pipeline.defs.resources import RESOURCE_KEY, EcosyncResource, ecosync_resource
from ecosync_pipeline.errors import ConfigError


def build_definitions(
    settings: Settings,
    *,
    resource: EcosyncResource | None = None,
    sync_cron: str = DEFAULT_SYNC_CRON,
    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
) -> Definitions:
    """Every asset, check, job, schedule, sensor and resource, for the stores of ``settings``.

    ``resource`` defaults to one that reads the ECOSYNC_* variables when a run starts.
    """
    partitions = store_partitions(settings)
    return Definitions(
        assets=[store_sync_positions, restored_sync_positions, build_new_orders(partitions)],
        asset_checks=[position_checks, build_new_orders_check(partitions)],
        jobs=[sync_orders_job, recover_sync_positions],
        schedules=[build_order_sync_schedule(sync_orders_job, partitions, sync_cron)],
        sensors=[build_cache_loss_sensor(recover_sync_positions, sensor_interval_seconds)],
        resources={RESOURCE_KEY: resource if resource is not None else ecosync_resource()},
    )


def _interval(environ: Mapping[str, str]) -> int:
    raw = environ.get("ECOSYNC_SENSOR_INTERVAL_SECONDS") or str(DEFAULT_INTERVAL_SECONDS)
    if not raw.isdigit() or not 5 <= int(raw) <= 3600:
        raise ConfigError(
            f"ECOSYNC_SENSOR_INTERVAL_SECONDS={raw!r} is invalid: give a whole "
            "number of seconds from 5 to 3600 (default 30)"
        )
    return int(raw)


@definitions
def defs() -> Definitions:
    """The code location as Dagster loads it, configured from the environment."""
    return build_definitions(
        Settings.from_env(),
        sync_cron=os.environ.get("ECOSYNC_SYNC_CRON") or DEFAULT_SYNC_CRON,
        sensor_interval_seconds=_interval(os.environ),
    )
