"""What a client waits on before each request: the store's shared budget (budget.SharedBudget).

EcoManager limits each store, not each client, so every client of a store draws from one
budget; the client only needs this one method of it.
"""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    """What a client waits on before each request (budget.SharedBudget, or a test pacer)."""

    def acquire(self) -> float:
        """Block until a request may start; return the seconds waited."""
        ...
