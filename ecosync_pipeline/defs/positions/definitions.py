"""The positions domain's definitions: store_sync_positions and restored_sync_positions,
their three checks, the recover_sync_positions job and cache_loss_sensor."""

from __future__ import annotations

from dagster import Definitions

from ecosync_pipeline.defs.catalog import catalogued
from ecosync_pipeline.defs.options import LocationOptions
from ecosync_pipeline.defs.positions.assets import restored_sync_positions, store_sync_positions
from ecosync_pipeline.defs.positions.checks import position_checks
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor


def build(options: LocationOptions) -> Definitions:
    """The domain's definitions, configured by ``options`` (no resources: the root's)."""
    return Definitions(
        assets=catalogued([store_sync_positions, restored_sync_positions], options),
        asset_checks=[position_checks],
        jobs=[recover_sync_positions],
        sensors=[build_cache_loss_sensor(recover_sync_positions, options.sensor_interval_seconds)],
    )
