"""What the catalog shows about every asset: who owns it, where its code is, its group.

Each domain passes its assets through ``catalogued`` as it builds its definitions:

- owners: the team that answers for ecosync, on every asset that names none;
- code references: each asset links to the file and line that defines it (Dagster's
  code reference metadata), to the repository when ``git_url`` is given
  (ECOSYNC_GIT_URL, e.g. https://github.com/org/ecosync, on ECOSYNC_GIT_BRANCH, default
  main), else to the local file;
- freshness policies, for the assets a domain gives one (new_orders: see
  ``new_orders_freshness``).

``orders_spec`` is the shape of every asset written per store into the orders table
(new_orders, and the mirror's reconciled_orders and order_statuses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

from ecosync_pipeline.defs.keys import OWNERS
from ecosync_pipeline.defs.options import LocationOptions

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def new_orders_freshness(minutes: int) -> FreshnessPolicy:
    """WARN after ``minutes`` without a sync of any store, FAIL after four times that.

    Dagster 1.13 judges a policy on the asset's latest materialization, whichever store
    it was; the store_freshness check (defs/orders/freshness.py) warns per store, over the same
    window.
    """
    return FreshnessPolicy.time_window(
        warn_window=timedelta(minutes=minutes), fail_window=timedelta(minutes=4 * minutes)
    )


def orders_spec(key: AssetKey, dep: AssetKey, description: str) -> AssetSpec:
    """An asset of the orders group, its runs written per store into the orders database.

    Skippable: each store's materialization is recorded as the store finishes, so the
    output itself carries nothing.
    """
    return AssetSpec(
        key,
        deps=[dep],
        group_name="orders",
        kinds={"python", "sql"},
        skippable=True,
        description=description,
    )


def catalogued(
    assets: Sequence[Any],
    options: LocationOptions,
    freshness: Mapping[AssetKey, FreshnessPolicy] | None = None,
) -> Sequence[Any]:
    """``assets`` with owners, code references and the given freshness policies."""
    policies = dict(freshness or {})

    def describe(spec: AssetSpec) -> AssetSpec:
        spec = spec if spec.owners else spec.replace_attributes(owners=OWNERS)
        if spec.key in policies:
            spec = spec.replace_attributes(freshness_policy=policies[spec.key])
        return spec

    described = with_source_code_references(map_asset_specs(describe, assets))
    if not options.git_url:
        return described
    return link_code_references_to_git(
        described,
        git_url=options.git_url,
        git_branch=options.git_branch,
        file_path_mapping=AnchorBasedFilePathMapping(
            local_file_anchor=PACKAGE_ROOT, file_anchor_path_in_repository="ecosync_pipeline"
        ),
    )
