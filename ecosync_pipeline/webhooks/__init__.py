"""EcoManager's webhooks: the signed receiver, the inbox, and applying it to the orders table.

Part of the core: nothing here imports Dagster (defs/webhooks adapts it).
"""
