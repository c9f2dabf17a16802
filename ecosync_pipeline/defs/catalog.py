"""What the catalog shows about every asset: who owns it, where its code is, how fresh
new_orders must be.

Applied once, where the definitions are assembled, so each domain's assets stay as
they are written:

- owners: the team that answers for ecosync, on every asset that names none;
- code references: each asset links to the file and line that defines it (Dagster's
  code reference metadata), to the repository when ``git_url`` is given
  (ECOSYNC_GIT_URL, e.g. https://github.com/org/ecosync, on ECOSYNC_GIT_BRANCH, default
  main), else to the local file;
- a freshness policy on new_orders: WARN when no store has synced for
  ``freshness_minutes`` (ECOSYNC_FRESHNESS_MINUTES, default 60: four missed schedule
  ticks), FAIL after four times that. Dagster 1.13 judges a policy on the asset's
  latest materialization, whichever store it was; the store_freshness check
  (orders/freshness.py) warns per store, over the same window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AnchorBasedFilePathMapping,
    AssetKey,
    AssetSpec,
    FreshnessPolicy,
    link_code_references_to_git,
    map_asset_specs,
    with_source_code_references,
)

from ecosync_pipeline.defs.positions.keys import OWNERS

NEW_ORDERS = AssetKey("new_orders")
DEFAULT_FRESHNESS_MINUTES = 60
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def new_orders_freshness(minutes: int) -> FreshnessPolicy:
    """WARN after ``minutes`` without a sync of any store, FAIL after four times that."""
    return FreshnessPolicy.time_window(
        warn_window=timedelta(minutes=minutes), fail_window=timedelta(minutes=4 * minutes)
    )


def catalogued(
    assets: Sequence[Any],
    *,
    freshness_minutes: int = DEFAULT_FRESHNESS_MINUTES,
    git_url: str | None = None,
    git_branch: str = "main",
) -> Sequence[Any]:
    """``assets`` with owners, code references and new_orders' freshness policy."""
    freshness = new_orders_freshness(freshness_minutes)

    def describe(spec: AssetSpec) -> AssetSpec:
        spec = spec if spec.owners else spec.replace_attributes(owners=OWNERS)
        if spec.key == NEW_ORDERS:
            spec = spec.replace_attributes(freshness_policy=freshness)
        return spec

    described = with_source_code_references(map_asset_specs(describe, assets))
    if not git_url:
        return described
    return link_code_references_to_git(
        described,
        git_url=git_url,
        git_branch=git_branch,
        file_path_mapping=AnchorBasedFilePathMapping(
            local_file_anchor=PACKAGE_ROOT, file_anchor_path_in_repository="ecosync_pipeline"
        ),
    )
