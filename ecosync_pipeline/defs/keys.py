"""Every name the Dagster domains share, defined once: asset keys, check names, job names,
tags, the partitions' name, the pool and the owners.

A domain (positions, orders, mirror, webhooks) refers to another domain's asset, job or
tag through this module only, never through that domain's modules, so each domain's
definitions can be read, built and tested alone. data/dagster*.yaml repeat the tags that
the run queue limits (dagster/partition, ecosync/batch, ecosync/recovery).
"""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey

# The positions domain.
STORE_SYNC_POSITIONS = AssetKey("store_sync_positions")
RESTORED_SYNC_POSITIONS = AssetKey("restored_sync_positions")
CACHE_HEALTH = "cache_health"
POSITION_HEALTH = "position_health"
LAYER_AGREEMENT = "layer_agreement"
RECOVER_SYNC_POSITIONS_JOB = "recover_sync_positions"
POSITIONS_POOL = "ecosync_positions"
"""Steps that write every store's position share this pool (one at a time, dagster.yaml)."""

# The orders domain.
NEW_ORDERS = AssetKey("new_orders")
NEW_ORDERS_COMPLETE = "new_orders_complete"
NEW_ORDERS_COMPLETE_KEY = AssetCheckKey(NEW_ORDERS, NEW_ORDERS_COMPLETE)
STORE_FRESHNESS = "store_freshness"
STORE_FRESHNESS_KEY = AssetCheckKey(NEW_ORDERS, STORE_FRESHNESS)
SYNC_ORDERS_JOB = "sync_orders"

# The mirror domain.
RECONCILED_ORDERS = AssetKey("reconciled_orders")
ORDER_STATUSES = AssetKey("order_statuses")
RECONCILE_ORDERS_JOB = "reconcile_orders"
REFRESH_ORDER_STATUSES_JOB = "refresh_order_statuses"

# The webhooks domain.
WEBHOOK_EVENTS = AssetKey("webhook_events")
WEBHOOK_DELIVERIES_FLOWING = "webhook_deliveries_flowing"

# One partition per store, shared by every per-store asset.
STORE_PARTITIONS_NAME = "stores"

# Run tags.
STORE_TAG = "ecosync/store"
"""The tag every run of one store carries, whatever launched it."""
STORE_RUN_TAG_PREFIX = "ecosync/store."
"""Every run that syncs, reconciles, refreshes or recovers a store carries the tag
``ecosync/store.<STORE>=1``, one per store however many the run has: Dagster's run filter
matches a tag's key and value exactly, so one filter finds every run of a store."""
STORE_RUN_TAG_VALUE = "1"
BATCH_TAG = "ecosync/batch"
"""first..last of a schedule's batch: one run per batch at a time (the run queue)."""
RECOVERY_TAG = "ecosync/recovery"
LOSS_EVENT_TAG = "ecosync/loss-event"
LOSS_SEEN_AT_TAG = "ecosync/loss-seen-at"
"""When cache_loss_sensor first saw the loss a recovery run mends (ISO 8601, UTC)."""
REDIS_STATE_TAG = "ecosync/redis-state"
STEPPED_ASIDE_TAG = "ecosync/stepped-aside-for"
"""On a restore that did nothing because another was under way: that run's id, so the
Runs page says why this one restored nothing."""
GAP_TAG = "ecosync/webhook-gap"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The tags that make a run target a range of partitions, as Dagster's single-run backfills
do (a RunRequest has no range argument; Dagster reads these tags from the run)."""

OWNERS = ["team:back-office"]
"""Who answers for the positions and the order sync (shown on every asset)."""
