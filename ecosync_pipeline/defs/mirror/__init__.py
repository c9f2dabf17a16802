"""The mirror's Dagster layer: the reconciliation and the status refresh per store partition.

``reconciled_orders`` carries each store's budgeted reconciliation sweep on, and
``order_statuses`` re-reads each store's open orders; each has a job and a schedule of
its own, one run per batch of stores, one materialization per store whose metadata says
what it read, found and fixed.
"""
