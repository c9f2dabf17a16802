"""Orders moving through their states over time, as a cash-on-delivery shop's do.

An open order (not Livré, Annulé or Retourné) moves one state at a time along
OPEN_FLOW: En dispatch -> Confirmé (or Annulé) -> En cours -> Expédié -> Livré (or
Retourné). With the switch ``status_flow_rate`` a share of the store's open orders moves
on each simulated minute; ``time_scale`` (simulated seconds per real second) lets a test
see an hour of changes in a minute. ``Simulator.advance_statuses(store, n)`` applies n
moves at once, for benchmarks.
"""

from __future__ import annotations

import random

FINAL_STATES = frozenset({"Livré", "Annulé", "Retourné"})
"""States an order never leaves on its own (a status refresh can stop reading it)."""

OPEN_FLOW: dict[str, tuple[tuple[str, int], ...]] = {
    "En dispatch": (("Confirmé", 85), ("Annulé", 15)),
    "Confirmé": (("En cours", 100),),
    "En cours": (("Expédié", 100),),
    "Expédié": (("Livré", 85), ("Retourné", 15)),
}
"""An open state -> the states it moves to, with weights."""


def is_open(state: str) -> bool:
    """Whether an order in ``state`` will still change."""
    return state not in FINAL_STATES


def next_open_state(state: str, rng: random.Random) -> str:
    """The state an open order moves to next (drawn from OPEN_FLOW's weights)."""
    choices = OPEN_FLOW.get(state)
    if choices is None:
        raise ValueError(f"{state!r} is not an open state; open ones are {', '.join(OPEN_FLOW)}")
    return rng.choices([s for s, _ in choices], [w for _, w in choices])[0]


class StatusClock:
    """How many open orders are due to move, from the time elapsed between two looks.

    The expected number of moves (rate x open orders x simulated minutes) accumulates
    with its fraction carried over, so a store ticked ten times a second moves as many
    orders in a minute as one ticked once a minute.
    """

    def __init__(self) -> None:
        self._last: float | None = None
        self._carry = 0.0

    def due(self, now: float, rate: float, time_scale: float, open_orders: int) -> int:
        """Moves due since the last look, at ``rate`` of ``open_orders`` a simulated minute."""
        last, self._last = self._last, now
        if last is None or rate <= 0 or open_orders == 0:
            self._carry = 0.0
            return 0
        minutes = max(0.0, now - last) * time_scale / 60.0
        self._carry += minutes * rate * open_orders
        moves = int(self._carry)
        self._carry -= moves
        return moves
