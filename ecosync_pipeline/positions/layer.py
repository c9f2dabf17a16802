"""The interface every position layer implements: read many stores, write many, say why.

    PositionLayer.read_many(stores)  -> LayerRead   the positions held, or why not
    PositionLayer.write_many(...)    -> Written     whether the layer took them, or why not
    PositionLayer.coalescing()                      writes gathered for a while (a batch)
    PositionLayer.close()                           connections released

The Redis, JSON backup and database layers are siblings behind it, and they fail the
same way: neither method raises for a layer that is down, unreadable or refusing; the
answer carries the reason (``error``) and, for a read, the error itself (``failure``)
so the chain can decide: Redis or the backup missing is a fallback, the database
missing (the truth) stops the sync.

A layer may read more than positions (Redis its sentinel, the database each store's
summary): its read is then a subclass of LayerRead, and the Protocol is generic in it,
so the chain composes any three layers while each reader keeps its layer's facts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeVar

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions.model import SyncPosition

LayerName = Literal["redis", "json", "database"]


class Unavailable(enum.Enum):
    """What a layer that could not be read holds for a store."""

    UNAVAILABLE = "unavailable"


UNAVAILABLE: Final = Unavailable.UNAVAILABLE
LayerValue = SyncPosition | None | Literal[Unavailable.UNAVAILABLE]
"""A position, None when the layer holds none for the store, UNAVAILABLE when it is down."""


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

    def lookup(self, store: str) -> LayerValue:
        """The store's position, None when absent, UNAVAILABLE when the layer did not answer."""
        if not self.ok:
            return UNAVAILABLE
        return self.positions.get(store)


@dataclass(frozen=True)
class Written:
    """Whether a layer took a write; truthy when it did."""

    error: str | None = None
    generation: str | None = None
    """The generation the positions now live under (Redis's sentinel), for the next
    layer to record."""

    def __bool__(self) -> bool:
        return self.error is None


ReadT = TypeVar("ReadT", bound=LayerRead, covariant=True)


class PositionLayer(Protocol[ReadT]):
    """A place that holds sync positions (Redis, the JSON backup, the orders database)."""

    @property
    def name(self) -> LayerName: ...

    @property
    def location(self) -> str:
        """Where the layer is, for messages (never with a password)."""
        ...

    def read_many(self, stores: Sequence[Store]) -> ReadT:
        """Every given store's position in one read; never raises for the layer's faults."""
        ...

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        """Store the positions in one write (``recovery``: restored from a lower layer;
        ``generation``: the one the layer above wrote them under, to record)."""
        ...

    def coalescing(self) -> AbstractContextManager[None]:
        """Within the block, writes may be gathered and land together (a batch of stores);
        all have landed when it closes."""
        ...

    def close(self) -> None:
        """Release what the layer holds open."""
        ...
