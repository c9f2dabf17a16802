"""The webhooks domain's definitions: webhook_events (observed, over the stores that take
webhooks), its check and webhook_inbox_sensor, which asks the sync job (by name) to run for a store
whose deliveries left a gap."""

from __future__ import annotations

from dagster import Definitions

from ecosync_pipeline.defs.catalog import catalogued
from ecosync_pipeline.defs.options import LocationOptions
from ecosync_pipeline.defs.webhooks.assets import build_flowing_check, webhook_events_spec
from ecosync_pipeline.defs.webhooks.sensors import build_webhook_inbox_sensor


def build(options: LocationOptions) -> Definitions:
    """The domain's definitions, configured by ``options`` (no resources: the root's)."""
    return Definitions(
        assets=catalogued([webhook_events_spec()], options),
        asset_checks=[build_flowing_check()],
        sensors=[build_webhook_inbox_sensor(options.sensor_interval_seconds)],
    )
