"""What the fallback chain reads and answers: the snapshot of the layers, a resolved
position, a restore report, a save result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.positions.layer import LayerName, LayerRead, LayerValue
from ecosync_pipeline.positions.model import PositionSource, SyncPosition

RedisReadT = TypeVar("RedisReadT", bound=LayerRead)
BackupReadT = TypeVar("BackupReadT", bound=LayerRead)
DatabaseReadT = TypeVar("DatabaseReadT", bound=LayerRead)


@dataclass(frozen=True)
class LayerOutcome:
    """What one layer offered for a store and why it was used or passed over."""

    layer: LayerName
    verdict: str
    detail: str = ""


@dataclass(frozen=True)
class ResolvedPosition:
    """A verified position, the resume page as fetched, the API calls spent and the trail."""

    position: SyncPosition
    page: Page | None
    fetches: int
    trail: tuple[LayerOutcome, ...] = ()
    moved: bool = False
    """Verification found the resume page elsewhere than the position said."""

    @property
    def source(self) -> PositionSource:
        """The layer the position came from."""
        return self.position.source


@dataclass(frozen=True)
class LayerPositions:
    """What each layer held for one store before a restore."""

    redis: LayerValue
    json: SyncPosition | None
    database: SyncPosition | None


@dataclass(frozen=True)
class RestoreReport:
    """One store's restore: before (per layer), after, where from, API calls, error."""

    store: str
    before: LayerPositions
    after: SyncPosition | None
    restored_from: PositionSource | None
    api_calls: int
    error: str | None = None
    trail: tuple[LayerOutcome, ...] = ()

    @property
    def ok(self) -> bool:
        """The store now has a verified position."""
        return self.error is None and self.after is not None


@dataclass(frozen=True)
class SaveResult:
    """Which layers took a position write (a layer that failed logged a warning)."""

    redis: bool
    json: bool
    json_error: str | None = None
    written: int = 0


@dataclass(frozen=True)
class Snapshot(Generic[RedisReadT, BackupReadT, DatabaseReadT]):
    """Every layer as read at one moment for a set of stores: what the chain decides from.

    The JSON layer may be given as a function that reads it: it is then read only if
    something asks for it (a sync whose Redis position is usable never does). Each read
    keeps its layer's own type (Redis's carries the sentinel, the database's the
    summaries) for the readers that need more than positions.
    """

    redis: RedisReadT
    json_read: BackupReadT | Callable[[], BackupReadT]
    database: DatabaseReadT

    @cached_property
    def json(self) -> BackupReadT:
        """The JSON layer's read, made now if it was deferred."""
        read = self.json_read
        return read() if callable(read) else read

    def truth(self, store: str) -> SyncPosition | None:
        """The database's position for the store; raises the database's error if unread."""
        if self.database.failure is not None:
            raise self.database.failure
        return self.database.get(store)
