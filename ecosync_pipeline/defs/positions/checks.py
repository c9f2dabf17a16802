"""Checks on store_sync_positions: cache health, each store's position health, layer agreement.

The three are judged from one status report (one Redis round trip, one backup read, one
query), in one step, so they always describe the same moment; positions.judging judges
and health.py renders, as the sensor does to record the checks on every change.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    multi_asset_check,
)

from ecosync_pipeline.defs import keys
from ecosync_pipeline.defs.failures import reported
from ecosync_pipeline.defs.positions.health import check_result
from ecosync_pipeline.defs.positions.story import standing_for
from ecosync_pipeline.defs.resources import PositionsResource
from ecosync_pipeline.positions.health import status_report
from ecosync_pipeline.positions.judging import CACHE_HEALTH_ERROR_THRESHOLD, CACHE_HEALTH_THRESHOLD
from ecosync_pipeline.positions.model import utc_now

CACHE_HEALTH = AssetCheckSpec(
    keys.CACHE_HEALTH,
    asset=keys.STORE_SYNC_POSITIONS,
    description=f"At least {CACHE_HEALTH_THRESHOLD:g}% of the stores have a healthy "
    f"position in Redis: a WARN below, an ERROR below {CACHE_HEALTH_ERROR_THRESHOLD:g}% (a "
    "flush or a restart without persistence is 0%).",
)
POSITION_HEALTH = AssetCheckSpec(
    keys.POSITION_HEALTH,
    asset=keys.STORE_SYNC_POSITIONS,
    description="Every store's Redis position agrees with the orders database: ERROR when "
    "missing, reset to page 1 or ahead of the data; WARN when stale or Redis is unreachable.",
)
LAYER_AGREEMENT = AssetCheckSpec(
    keys.LAYER_AGREEMENT,
    asset=keys.STORE_SYNC_POSITIONS,
    description="Redis, the JSON backup and the orders database name the same last order id "
    "(and Redis and the backup the same page) for every store.",
)


@multi_asset_check(
    name="position_checks",
    specs=[CACHE_HEALTH, POSITION_HEALTH, LAYER_AGREEMENT],
    can_subset=True,
    description="Cache health, position health and layer agreement, from one status report. "
    "cache_loss_sensor records them on every change too, without a run; while a restore "
    "is under way they name it.",
)
def position_checks(
    context: AssetCheckExecutionContext, positions: PositionsResource
) -> Iterator[AssetCheckResult]:
    with reported():
        report = status_report(positions.chain)
    standing = standing_for(context.instance, report, utc_now(), run_id=context.run.run_id)
    selected: set[AssetCheckKey] = set(context.selected_asset_check_keys)
    for spec in (CACHE_HEALTH, POSITION_HEALTH, LAYER_AGREEMENT):
        if spec.key in selected:
            yield check_result(spec.name, report, standing)
