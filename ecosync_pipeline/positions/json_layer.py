"""Layer 2: the JSON backup file, in the original system's format.

    {"version": "1.0.0", "timestamp": "...", "redisGeneration": "...",
     "stores": {"NATUR": {"storeIdentifier": "NATUR", "storeName": "...", "lastPage": 9081,
                          "lastOrderId": 181601, "firstId": 181590, "lastId": 181601,
                          "timestamp": "...", "source": "redis", "perPage": 20, ...}}}

``redisGeneration`` is the Redis sentinel generation of the last write that reached
Redis too: it outlives a flush of Redis, so loss detection can name the generation that
was lost even when it never saw it (the original system ignores the key).

The file may live on any fsspec filesystem (a local path, ``file://``, ``memory://``,
``s3://``...). Every write is a read-modify-write under a lock (a FileLock next to a
local file, an in-process lock otherwise), so updating one store never loses another's
entry, and lands atomically: a temporary file in the same folder, fsync, rename. The file
and its lock are created with mode 0600.

Inside ``coalescing()`` (a run or a command syncing many stores), the writes of every
thread in this process are gathered and land together, at most one file write a second
and a last one when it closes: a thousand stores rewrite a file of a thousand entries a
few times, not a thousand times. An entry waiting to be written is at or behind the
data (invariant 2), and reads in this process see it already.

A file that is empty, truncated, not JSON, or of an unknown version is never trusted and
never deleted: it is renamed with a ``.corrupt-<UTC time>`` suffix, reported once as a
WARNING (and as ``last_quarantined``), and treated as absent, so positions come from the
database until the next write recreates the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import filelock
from fsspec.implementations.local import LocalFileSystem
from upath import UPath

from ecosync_pipeline.config import STORE_ID_PATTERN, Store, validate_store_identifier
from ecosync_pipeline.errors import BackupCorrupt, ConfigError, PositionError
from ecosync_pipeline.positions.codec import (
    InvalidStoredPosition,
    format_timestamp,
    position_fields,
    position_from_fields,
)
from ecosync_pipeline.positions.layer import LayerName, LayerRead, Written
from ecosync_pipeline.positions.model import SyncPosition, utc_now

logger = logging.getLogger(__name__)

BACKUP_VERSION: Final = "1.0.0"
KNOWN_VERSIONS: Final = frozenset({BACKUP_VERSION})
DEFAULT_LOCK_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_COALESCE_SECONDS: Final = 1.0
FILE_MODE: Final = 0o600

# One lock per non-local file URL: filesystems like memory:// or s3:// have no file locks,
# so writers in this process at least never interleave.
_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class BackupRead(LayerRead):
    """The backup's entries, and the last file this layer had to move aside (if any)."""

    layer: LayerName = "json"
    quarantined: BackupCorrupt | None = None


class _Unreadable(Exception):
    """The file's content cannot be trusted (the reason is the message)."""


class JsonBackup:
    """The JSON backup of every store's position (layer 2)."""

    name: Final[LayerName] = "json"

    def __init__(
        self,
        location: str | os.PathLike[str] | UPath,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.path = location if isinstance(location, UPath) else UPath(location)
        self.lock_timeout = lock_timeout
        self.last_quarantined: BackupCorrupt | None = None
        self._local = isinstance(self.path.fs, LocalFileSystem)
        self._warned_entries: set[tuple[str, str]] = set()
        # Coalesced writes: the entries waiting, the generation to record with them.
        self._pending: dict[str, SyncPosition] = {}
        self._pending_generation: str | None = None
        self._pending_lock = threading.Lock()
        # One flush at a time, from taking the entries to landing them: a later flush
        # overtaking an earlier one would put older positions over newer ones.
        self._flush_lock = threading.Lock()
        self._coalescing = 0
        self._coalesce_seconds = DEFAULT_COALESCE_SECONDS
        self._last_write: float | None = None

    def __repr__(self) -> str:
        return f"JsonBackup({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The file's path or URL, for messages."""
        return str(self.path)

    # -- the layer interface -------------------------------------------------------------

    def read_many(self, stores: Sequence[Store]) -> BackupRead:
        """The entries of ``stores`` and the recorded Redis generation, in one file read."""
        try:
            document = self._load()
        except PositionError as exc:
            return BackupRead(error=str(exc), failure=exc, quarantined=self.last_quarantined)
        wanted = {s.identifier for s in stores}
        if document is None:
            return BackupRead(positions=self._waiting(wanted), quarantined=self.last_quarantined)
        # Only the wanted entries are parsed: a sync of one store among a thousand reads
        # the file for that store alone.
        held = {**self._positions(document, wanted), **self._waiting(wanted)}
        generation = document.get("redisGeneration")
        return BackupRead(
            positions=held,
            generation=generation if isinstance(generation, str) else None,
            quarantined=self.last_quarantined,
        )

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        """Update several stores' entries in one locked read-modify-write.

        ``generation`` (the Redis sentinel's, when Redis took the same write) is recorded.
        Inside ``coalescing()``, the entries may wait for the next write of the file.
        """
        if self._coalescing:
            with self._pending_lock:
                self._pending.update({p.store: p for p in positions})
                self._pending_generation = generation or self._pending_generation
                last = self._last_write
                due = last is None or time.monotonic() - last >= self._coalesce_seconds
            return self.flush() if due else Written()
        try:
            self._write_entries(positions, generation)
        except PositionError as exc:
            logger.warning("%s", exc)
            return Written(error=str(exc))
        return Written()

    @contextlib.contextmanager
    def coalescing(self, seconds: float = DEFAULT_COALESCE_SECONDS) -> Iterator[None]:
        """Gather this process's writes into at most one file write every ``seconds``;
        whatever is still waiting is written when the outermost one closes."""
        with self._pending_lock:
            if not self._coalescing:  # the outermost block sets the pace
                self._coalesce_seconds = seconds
                self._last_write = None
            self._coalescing += 1
        try:
            yield
        finally:
            with self._pending_lock:
                self._coalescing -= 1
            self.flush()

    def close(self) -> None:
        """Write what ``coalescing()`` still holds, if anything (nothing stays open)."""
        self.flush()

    def flush(self) -> Written:
        """Write the entries waiting from ``coalescing()``, if any; falsy (and logged) if
        it failed, and those entries wait for the next write."""
        with self._flush_lock:
            with self._pending_lock:
                positions = list(self._pending.values())
                generation = self._pending_generation
                self._pending.clear()
                self._pending_generation = None
                if positions:
                    self._last_write = time.monotonic()
            if not positions:
                return Written()
            return self._land(positions, generation)

    def _land(self, positions: list[SyncPosition], generation: str | None) -> Written:
        """Write taken entries; on failure they wait again while the block is open."""
        try:
            self._write_entries(positions, generation)
        except PositionError as exc:
            with self._pending_lock:
                if self._coalescing:  # tried again with the next write
                    for p in positions:
                        self._pending.setdefault(p.store, p)
                    self._pending_generation = self._pending_generation or generation
            stores = ", ".join(p.store for p in positions[:5])
            more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
            logger.warning("%s (entries of %s%s not written)", exc, stores, more)
            return Written(error=str(exc))
        return Written()

    # -- reads ---------------------------------------------------------------------------

    def read_all(self) -> dict[str, SyncPosition]:
        """Every readable store entry; {} when the file is absent or had to be moved aside."""
        document = self._load()
        held = self._positions(document) if document is not None else {}
        return {**held, **self._waiting(None)}

    def _waiting(self, wanted: AbstractSet[str] | None) -> dict[str, SyncPosition]:
        """Entries ``coalescing()`` holds for the next write (of ``wanted`` only, if given)."""
        with self._pending_lock:
            waiting = [p for k, p in self._pending.items() if wanted is None or k in wanted]
        return {p.store: _as_json(p) for p in waiting}

    def read(self, store: str) -> SyncPosition | None:
        """One store's position, or None."""
        return self.read_all().get(store)

    # -- writes --------------------------------------------------------------------------

    def write(self, position: SyncPosition) -> Written:
        """Update one store's entry (others are kept); falsy (and logged) if it failed."""
        return self.write_many([position])

    def _write_entries(self, positions: Sequence[SyncPosition], generation: str | None) -> None:
        if not positions:
            return
        with self._lock():
            document = self._load(locked=True) or {}
            stores = document.get("stores")
            entries: dict[str, Any] = dict(stores) if isinstance(stores, Mapping) else {}
            for position in positions:
                entry = {"storeIdentifier": position.store, **position_fields(position)}
                entries[position.store] = entry
            # Only valid identifiers reach the file: whatever else was there is dropped.
            kept = {k: entries[k] for k in sorted(entries) if STORE_ID_PATTERN.fullmatch(str(k))}
            document.update(
                version=BACKUP_VERSION, timestamp=format_timestamp(utc_now()), stores=kept
            )
            if generation:
                document["redisGeneration"] = generation
            self._replace(_dump(document))

    # -- file handling -------------------------------------------------------------------

    def _load(self, *, locked: bool = False) -> dict[str, Any] | None:
        """The parsed document, None if absent; an untrustworthy file is moved aside."""
        try:
            raw = self._read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _parse(raw)
        except _Unreadable as exc:
            reason = str(exc)
        if locked:
            self._quarantine(reason)
            return None
        with self._lock():
            # Another process may have replaced the file meanwhile: judge it again.
            return self._load(locked=True)

    def _read_bytes(self) -> bytes:
        try:
            if self._local:
                return Path(self.path.path).read_bytes()
            return self.path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise PositionError(
                f"backup file {self.location} cannot be read ({exc}); check its permissions "
                "or point ECOSYNC_BACKUP_PATH elsewhere"
            ) from exc

    def _replace(self, data: bytes) -> None:
        temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            if self._local:
                _write_local_atomically(Path(self.path.path), Path(temp.path), data)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temp.write_bytes(data)
                self.path.fs.mv(temp.path, self.path.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if temp.exists():
                    temp.unlink()
            raise PositionError(
                f"backup file {self.location} cannot be written ({exc}); positions stay in "
                "Redis and can be recomputed from the database. Check the folder's "
                "permissions and free space."
            ) from exc

    def _quarantine(self, reason: str) -> None:
        stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        moved_to: str | None = str(target)
        try:
            if self._local:
                os.rename(self.path.path, target.path)
            else:
                self.path.fs.mv(self.path.path, target.path)
        except OSError as exc:
            moved_to = None
            reason = f"{reason}; moving it aside failed: {exc}"
        error = BackupCorrupt(self.location, moved_to, reason)
        self.last_quarantined = error
        logger.warning("%s", error)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        if not self._local:
            with _process_lock(self.location):
                yield
            return
        local = Path(self.path.path)
        lock = filelock.FileLock(f"{local}.lock", timeout=self.lock_timeout, mode=FILE_MODE)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except filelock.Timeout as exc:
            raise PositionError(
                f"backup file {self.location}: another process has held its lock "
                f"({local}.lock) for over {self.lock_timeout:.0f} s; if no ecosync process "
                "is running, delete the lock file"
            ) from exc
        except OSError as exc:
            raise PositionError(
                f"backup file {self.location}: its folder or lock file cannot be created "
                f"({exc}); check the folder's permissions"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def _positions(
        self, document: Mapping[str, Any], wanted: AbstractSet[str] | None = None
    ) -> dict[str, SyncPosition]:
        """The readable entries (of ``wanted`` only, when given)."""
        stores: Mapping[Any, Any] = document["stores"]
        if wanted is not None:
            stores = {k: stores[k] for k in wanted if k in stores}
        positions: dict[str, SyncPosition] = {}
        for raw_key, entry in stores.items():
            try:  # the file is outside input: its keys are parsed like the stores file's
                key = validate_store_identifier(raw_key)
            except ConfigError:
                self._warn_entry(
                    str(raw_key), "the store identifier is invalid (1 to 32 letters or digits)"
                )
                continue
            declared = entry.get("storeIdentifier", key) if isinstance(entry, Mapping) else key
            if declared != key:
                self._warn_entry(key, f"its storeIdentifier is {declared!r}")
                continue
            try:
                positions[key] = position_from_fields(key, entry, source="json")
            except InvalidStoredPosition as exc:
                self._warn_entry(key, str(exc))
        return positions

    def _warn_entry(self, key: str, reason: str) -> None:
        if (key, reason) not in self._warned_entries:
            self._warned_entries.add((key, reason))
            logger.warning(
                "backup file %s: entry %r is ignored: %s", self.location, key[:40], reason
            )


def _as_json(position: SyncPosition) -> SyncPosition:
    """A position waiting to be written, as a read of the file would give it back."""
    return position_from_fields(position.store, position_fields(position), source="json")


def _dump(document: Mapping[str, Any]) -> bytes:
    """The document as JSON, one store a line.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, about 180 ms for a
    thousand stores, and every checkpoint rewrites the file: each store's entry is
    encoded by the C encoder instead, and the lines are joined here.
    """
    head = {k: v for k, v in document.items() if k != "stores"}
    stores: Mapping[str, Any] = document.get("stores") or {}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
    entries = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in stores.items())
    body = ",\n".join([*lines, f'  "stores": {{\n{entries}\n  }}' if entries else '  "stores": {}'])
    return f"{{\n{body}\n}}\n".encode()


def _parse(raw: bytes) -> dict[str, Any]:
    """The document if it can be trusted, else _Unreadable with the reason."""
    if not raw.strip():
        raise _Unreadable("the file is empty")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _Unreadable(
            f"not valid JSON, perhaps truncated ({exc.msg} at line "
            f"{exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        # What json raises for a number of over 4,300 digits or nesting deeper than the
        # recursion limit: no backup file looks like either.
        raise _Unreadable(f"not a backup file ({type(exc).__name__}: {exc})") from None
    if not isinstance(document, dict):
        raise _Unreadable(f"the top level is a JSON {type(document).__name__}, not an object")
    version = document.get("version")
    # A list or an object is unhashable: `in` a frozenset would raise TypeError.
    if not isinstance(version, str) or version not in KNOWN_VERSIONS:
        raise _Unreadable(
            f"unknown version {version!r} (this ecosync reads {', '.join(sorted(KNOWN_VERSIONS))})"
        )
    if not isinstance(document.get("stores"), dict):
        raise _Unreadable("'stores' is missing or not an object")
    return document


def _write_local_atomically(path: Path, temp: Path, data: bytes) -> None:
    """Write ``temp`` with mode 0600, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    with contextlib.suppress(OSError):
        # The rename is durable only once the folder entry is on disk too.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _process_lock(location: str) -> Iterator[None]:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(location, threading.RLock())
    with lock:
        yield
