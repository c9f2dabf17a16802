"""The Dagster layer: it adapts the core (positions, sync, storage, mirror, webhooks) and
adds no logic. One folder per domain, each building its own Definitions in its
``definitions.py`` (``build(options)``); ecosync_pipeline.definitions merges them.

positions/     store_sync_positions, restored_sync_positions, their checks, the
               recover_sync_positions job and cache_loss_sensor
orders/        new_orders (per store), its completeness and freshness checks, the sync
               job and schedule, the store partitions sensor
mirror/        reconciled_orders and order_statuses, their jobs and schedules
webhooks/      webhook_events, its check and webhook_inbox_sensor

No domain imports another; what they share is here:

keys.py        every asset key, check name, job name and tag, defined once
options.py     the code location's options and their ECOSYNC_* variables
resources.py   one resource per dependency: orders_db, ecomanager, positions
partitions.py  one partition per store (registered as the code location loads), the
               schedule's batches, a batch's sync run, the store tags of every run
catalog.py     owners, code references and freshness policies of every asset
metadata.py    tables for metadata; failures.py: our errors as Dagster failures
"""
