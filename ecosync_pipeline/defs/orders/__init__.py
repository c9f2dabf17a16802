"""The orders domain: new_orders, its check, the sync job and its schedule."""
