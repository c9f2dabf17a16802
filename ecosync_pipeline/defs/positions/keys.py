"""The names the positions domain shares: its two assets, its checks and its pool."""

from __future__ import annotations

from dagster import AssetKey

STORE_SYNC_POSITIONS = AssetKey("store_sync_positions")
RESTORED_SYNC_POSITIONS = AssetKey("restored_sync_positions")
POSITIONS_POOL = "ecosync_positions"
"""Steps that write every store's position share this pool (one at a time, dagster.yaml)."""

CACHE_HEALTH = "cache_health"
POSITION_HEALTH = "position_health"
LAYER_AGREEMENT = "layer_agreement"
OWNERS = ["team:back-office"]
"""Who answers for the positions and the order sync (shown on every asset)."""
