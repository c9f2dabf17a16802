"""The code location: the four domains' Definitions merged, with the resources they share.

Each domain under ecosync_pipeline.defs (positions, orders, mirror, webhooks, alerts)
builds its own definitions from the location's options; this module only merges them. Dagster
loads ``defs`` lazily: the environment is read when the code location loads, never at
import. The store partitions are dynamic (the instance holds them): ``defs`` registers the
stores of the file in the instance of DAGSTER_HOME as it loads, and a sensor and the
schedule add the stores added since, so editing the stores file needs no reload.
Tests call ``build_definitions`` with their own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dagster import Definitions, definitions

from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.alerts import build_alerts_definitions
from ecosync_pipeline.defs.mirror import definitions as mirror
from ecosync_pipeline.defs.options import LocationOptions
from ecosync_pipeline.defs.orders import definitions as orders
from ecosync_pipeline.defs.partitions import register_at_load
from ecosync_pipeline.defs.positions import definitions as positions
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.defs.webhooks import definitions as webhooks

DOMAINS = (positions, orders, mirror, webhooks)


def build_definitions(
    settings: Settings,
    *,
    resources: Mapping[str, Any] | None = None,
    options: LocationOptions | None = None,
    **changes: Any,
) -> Definitions:
    """Every domain's definitions for the stores of ``settings``, with ``options`` (or the
    defaults) and any of its fields given by name (``batch_size=1``).

    ``resources`` default to ones that read the ECOSYNC_* variables when a run starts
    (see defs.resources: orders_db, ecomanager, positions).
    """
    # The stores file is read now so that a missing or broken file fails the code location
    # with its line and reason; the partitions themselves follow the file at every tick.
    settings.stores()
    chosen = replace(options or LocationOptions(), **changes)
    shared = Definitions(
        resources=dict(resources) if resources is not None else ecosync_resources()
    )
    alerts = build_alerts_definitions(settings, interval_seconds=chosen.sensor_interval_seconds)
    return Definitions.merge(*(domain.build(chosen) for domain in DOMAINS), alerts, shared)


@definitions
def defs() -> Definitions:
    """The code location as Dagster loads it, configured from the environment, with the
    stores file's partitions registered in the instance (the CLI needs them at once)."""
    settings = Settings.from_env()
    built = build_definitions(settings, options=LocationOptions.from_env(os.environ))
    register_at_load([store.identifier for store in settings.stores()])
    return built
