"""The code location: Definitions assembled from ecosync_pipeline.defs, nothing else.

Dagster loads ``defs`` lazily: the environment is read when the code location loads,
never at import. The store partitions are dynamic (the instance holds them; a sensor and
the schedule add the stores of the file), so editing the stores file needs no reload.
Tests call ``build_definitions`` with their own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import Definitions, definitions

from ecosync_pipeline.config import Settings
from ecosync_pipeline.defs.alerts import build_alerts_definitions
from ecosync_pipeline.defs.catalog import DEFAULT_FRESHNESS_MINUTES, catalogued
from ecosync_pipeline.defs.mirror.assets import build_order_statuses, build_reconciled_orders
from ecosync_pipeline.defs.mirror.schedules import (
    DEFAULT_RECONCILE_CRON,
    DEFAULT_STATUS_CRON,
    build_reconcile_schedule,
    build_status_schedule,
    reconcile_orders_job,
    refresh_order_statuses_job,
)
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.orders.batch import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    MAX_WORKERS,
    default_runs,
)
from ecosync_pipeline.defs.orders.freshness import build_freshness_check
from ecosync_pipeline.defs.orders.schedules import (
    DEFAULT_SYNC_CRON,
    build_order_sync_schedule,
    sync_orders_job,
)
from ecosync_pipeline.defs.orders.sensors import build_store_partitions_sensor
from ecosync_pipeline.defs.partitions import store_partitions
from ecosync_pipeline.defs.positions.assets import restored_sync_positions, store_sync_positions
from ecosync_pipeline.defs.positions.checks import position_checks
from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
from ecosync_pipeline.defs.positions.sensors import (
    DEFAULT_INTERVAL_SECONDS,
    build_cache_loss_sensor,
)
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.defs.webhooks.assets import build_flowing_check, webhook_events_spec
from ecosync_pipeline.defs.webhooks.sensors import build_webhook_inbox_sensor
from ecosync_pipeline.errors import ConfigError


def build_definitions(
    settings: Settings,
    *,
    resources: Mapping[str, Any] | None = None,
    sync_cron: str = DEFAULT_SYNC_CRON,
    sensor_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
    runs: int = 1,
    reconcile_cron: str = DEFAULT_RECONCILE_CRON,
    status_cron: str = DEFAULT_STATUS_CRON,
    freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES,
    git_url: str | None = None,
    git_branch: str = "main",
) -> Definitions:
    """Every asset, check, job, schedule, sensor and resource, for the stores of ``settings``.

    ``resources`` default to ones that read the ECOSYNC_* variables when a run starts
    (see defs.resources: orders_db, ecomanager, positions).
    """
    # The stores file is read now so that a missing or broken file fails the code location
    # with its line and reason; the partitions themselves follow the file at every tick.
    settings.stores()
    partitions = store_partitions()
    schedule = build_order_sync_schedule(
        sync_orders_job, sync_cron, batch_size=batch_size, workers=workers, runs=runs
    )
    assets = [
        store_sync_positions,
        restored_sync_positions,
        build_new_orders(partitions),
        webhook_events_spec(partitions),
        build_reconciled_orders(partitions),
        build_order_statuses(partitions),
    ]
    return Definitions(
        assets=catalogued(
            assets, freshness_minutes=freshness_minutes, git_url=git_url, git_branch=git_branch
        ),
        asset_checks=[
            position_checks,
            build_flowing_check(partitions),
            build_freshness_check(freshness_minutes),
        ],
        jobs=[
            sync_orders_job,
            recover_sync_positions,
            reconcile_orders_job,
            refresh_order_statuses_job,
        ],
        schedules=[
            schedule,
            build_reconcile_schedule(reconcile_cron),
            build_status_schedule(status_cron),
        ],
        sensors=[
            build_cache_loss_sensor(
                recover_sync_positions, sensor_interval_seconds, freshness_minutes
            ),
            build_store_partitions_sensor(sensor_interval_seconds),
            build_webhook_inbox_sensor(sync_orders_job, sensor_interval_seconds),
            *build_alerts_definitions(settings, interval_seconds=sensor_interval_seconds).sensors,
        ],
        resources=dict(resources) if resources is not None else ecosync_resources(),
    )


def _whole_number(
    environ: Mapping[str, str], name: str, default: int, low: int, high: int, unit: str
) -> int:
    raw = environ.get(name) or str(default)
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(
            f"{name}={raw!r} is invalid: give a whole number of {unit} from {low} to "
            f"{high} (default {default})"
        )
    return int(raw)


def _interval(environ: Mapping[str, str]) -> int:
    return _whole_number(
        environ, "ECOSYNC_SENSOR_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS, 5, 3600, "seconds"
    )


@definitions
def defs() -> Definitions:
    """The code location as Dagster loads it, configured from the environment."""
    return build_definitions(
        Settings.from_env(),
        sync_cron=os.environ.get("ECOSYNC_SYNC_CRON") or DEFAULT_SYNC_CRON,
        sensor_interval_seconds=_interval(os.environ),
        batch_size=_whole_number(
            os.environ, "ECOSYNC_SYNC_BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, 10_000, "stores"
        ),
        workers=_whole_number(
            os.environ, "ECOSYNC_SYNC_WORKERS", DEFAULT_WORKERS, 1, MAX_WORKERS, "stores"
        ),
        # A tick's stores split across at least one run per core (when there are enough).
        runs=_whole_number(os.environ, "ECOSYNC_SYNC_RUNS", default_runs(), 1, 1000, "runs"),
        reconcile_cron=os.environ.get("ECOSYNC_RECONCILE_CRON") or DEFAULT_RECONCILE_CRON,
        status_cron=os.environ.get("ECOSYNC_STATUS_CRON") or DEFAULT_STATUS_CRON,
        freshness_minutes=_whole_number(
            os.environ,
            "ECOSYNC_FRESHNESS_MINUTES",
            DEFAULT_FRESHNESS_MINUTES,
            1,
            7 * 24 * 60,
            "minutes",
        ),
        git_url=os.environ.get("ECOSYNC_GIT_URL") or None,
        git_branch=os.environ.get("ECOSYNC_GIT_BRANCH") or "main",
    )
