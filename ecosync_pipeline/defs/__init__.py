"""The Dagster layer: it adapts the core (positions, sync, storage) and adds no logic.

resources.py   one resource per dependency: orders_db, ecomanager, positions
partitions.py  one partition per store, from the stores file
positions/     store_sync_positions, restored_sync_positions, their checks, the
               recover_sync_positions job and cache_loss_sensor
orders/        new_orders (per store), its completeness check, the sync job and schedule
"""
