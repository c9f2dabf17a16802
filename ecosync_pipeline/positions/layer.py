"""The interface every position layer implements: read many stores, write many, say why.

    PositionLayer.read_many(stores)  -> LayerRead   the positions held, or why not
    PositionLayer.write_many(...)    -> Written     whether the layer took them, or why not

The Redis, JSON backup and database layers are siblings behind it, and they fail the
same way: neither method raises for a layer that is down, unreadable or refusing; the
answer carries the reason (``error``) and, for a read, the error itself (``failure``)
so the chain can decide: Redis or the backup missing is a fallback, the database
missing (the truth) stops the sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.model import SyncPosition

LayerName = Literal["redis", "json", "database"]


@dataclass(frozen=True)
class LayerRead:
    """What one layer held for the stores asked, read at one moment, or why it could not say.

    ``generation`` is the Redis sentinel generation the positions were written under
    (Redis's own, or the one the backup recorded), which loss detection compares.
    """

    layer: LayerName
    positions: Mapping[str, SyncPosition] = field(default_factory=dict)
    error: str | None = None
    failure: EcosyncError | None = None
    generation: str | None = None

    @property
    def ok(self) -> bool:
        """The layer answered (it may still hold nothing for a store)."""
        return self.error is None

    def get(self, store: str) -> SyncPosition | None:
        """The store's position, or None (absent, or the layer did not answer)."""
        return self.positions.get(store)


@dataclass(frozen=True)
class Written:
    """Whether a layer took a write; truthy when it did."""

    error: str | None = None
    generation: str | None = None
    """Redis: the sentinel generation the positions now live under."""

    def __bool__(self) -> bool:
        return self.error is None


class PositionLayer(Protocol):
    """A place that holds sync positions (Redis, the JSON backup, the orders database)."""

    @property
    def name(self) -> LayerName: ...

    def read_many(self, stores: Sequence[Store]) -> LayerRead:
        """Every given store's position in one read; never raises for the layer's faults."""
        ...

    def write_many(self, positions: Sequence[SyncPosition], *, recovery: bool = False) -> Written:
        """Store the positions in one write (``recovery``: restored from a lower layer)."""
        ...
