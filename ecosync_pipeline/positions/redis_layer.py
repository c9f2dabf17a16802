"""Layer 1: positions in Redis, one key per store, plus a sentinel that tells a flush apart.

Keys keep the original format, ``ecomanager:pageinfo:{STORE}`` = a JSON string (see
positions.codec), without expiry unless a TTL is configured. With every position write,
in the same MULTI/EXEC, we also write the sentinel hash ``ecosync:positions:sentinel``:

    generation   a random token, set only when the sentinel is created (HSETNX), so it
                 lives exactly as long as Redis keeps our data: a flush, a restart
                 without persistence or an eviction of the sentinel all end it
    run_id       the Redis run_id (INFO server) as last read, recorded by each write
                 (and read again when a write creates the sentinel): a different
                 run_id now means Redis restarted since
    epoch        incremented by every recovery write (a position restored from the
                 backup or the database), so a later loss of the same keys is a new event
    origin       "recovery" or "sync": which kind of write created the sentinel (HSETNX
                 too), so a sentinel recreated by a recovery is told from one recreated by
                 a plain write after a loss nobody has recovered yet
    written_at   when positions were last written
    store:{ID}   one field per store ever written: a store listed here without a key
                 lost it (deleted, expired or evicted)

Reads of all stores, the sentinel and INFO go in one pipeline: one round trip. INFO is
never inside the write transaction, so an ACL that refuses it only costs the restart
detection, never the writes.

Redis is a cache here, never a dependency: connect and socket timeouts are short, and
any failure makes the layer answer "unavailable" (reads) or skip (writes), logged once
as a WARNING per instance. After a failure the layer does not try again for
``retry_after`` seconds, so a hanging Redis costs one timeout, not one per page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ecosync_pipeline.config import Store, StoreId
from ecosync_pipeline.positions.codec import (
    InvalidStoredPosition,
    format_timestamp,
    parse_timestamp,
    position_fields,
    position_from_fields,
)
from ecosync_pipeline.positions.layer import (
    UNAVAILABLE,
    LayerName,
    LayerRead,
    LayerValue,
    Unavailable,
    Written,
)
from ecosync_pipeline.positions.model import SyncPosition, utc_now

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "ecomanager:pageinfo:"
SENTINEL_KEY: Final = "ecosync:positions:sentinel"
STORE_FIELD_PREFIX: Final = "store:"
SENTINEL_FIELDS: Final = ("generation", "run_id", "epoch", "written_at", "origin")
DEFAULT_TIMEOUT_SECONDS: Final = 0.75
DEFAULT_RETRY_AFTER_SECONDS: Final = 15.0


RedisRead = LayerValue
"""A position, None when the store has no key, or UNAVAILABLE when Redis is down."""
__all__ = ["UNAVAILABLE", "RedisLayer", "RedisRead", "RedisSnapshot", "Sentinel", "Unavailable"]


@dataclass(frozen=True)
class Sentinel:
    """The sentinel hash as read: proof that Redis still holds what we wrote."""

    generation: str
    run_id: str | None
    epoch: int
    written_at: datetime
    stores: Mapping[str, str]
    """Each store ever written, and when it was last written (the raw timestamp)."""
    origin: str = "sync"


@dataclass(frozen=True)
class RedisSnapshot(LayerRead):
    """Every requested store's key, the sentinel and the server run_id, read at once."""

    layer: LayerName = "redis"
    sentinel: Sentinel | None = None
    run_id: str | None = None
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """Redis answered."""
        return self.ok

    @property
    def restarted(self) -> bool:
        """Redis runs under another run_id than at our last write (it restarted since)."""
        return (
            self.sentinel is not None
            and self.sentinel.run_id is not None
            and self.run_id is not None
            and self.sentinel.run_id != self.run_id
        )


class RedisLayer:
    """Positions in Redis; every operation degrades instead of raising."""

    name: Final[LayerName] = "redis"

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: int | None = None,
        key_prefix: str = KEY_PREFIX,
        sentinel_key: str = SENTINEL_KEY,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
        where: str = "redis",
    ) -> None:
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive or None, got {ttl_seconds}")
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self.sentinel_key = sentinel_key
        self.retry_after = retry_after
        self.where = where
        self._down_until = 0.0
        self._warned = False
        self._was_down = False
        self._run_id: str | None = None
        self._warned_keys: set[str] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_seconds: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> RedisLayer:
        """A layer on a new client with short timeouts and no retries (they would hang)."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
            health_check_interval=0,
        )
        return cls(client, ttl_seconds=ttl_seconds, retry_after=retry_after, where=_redact(url))

    @property
    def location(self) -> str:
        """The Redis URL without its password."""
        return self.where

    def key(self, store: StoreId) -> str:
        """The store's Redis key (a StoreId: only a validated identifier becomes a key)."""
        return f"{self.key_prefix}{store}"

    @property
    def available(self) -> bool:
        """False while the layer is waiting out a failure (no network is used then)."""
        return time.monotonic() >= self._down_until

    # -- reads ---------------------------------------------------------------------------

    def read_many(self, stores: Iterable[Store | StoreId]) -> RedisSnapshot:
        """Read the keys of ``stores``, the sentinel and the run_id in one round trip."""
        ids = list(dict.fromkeys(s.identifier if isinstance(s, Store) else s for s in stores))
        keys = [self.key(s) for s in ids]
        if not self.available:
            return RedisSnapshot(error="unavailable (waiting after a failure)")
        try:
            pipe = self.client.pipeline(transaction=False)
            if keys:
                pipe.mget(keys)
            # The sentinel's own fields and those of the stores read, not the whole hash:
            # it holds a field per store ever written, a thousand for a sync of one.
            fields = [*SENTINEL_FIELDS, *(f"{STORE_FIELD_PREFIX}{s}" for s in ids)]
            pipe.hmget(self.sentinel_key, fields)
            pipe.info("server")
            # A command refused on its own (INFO denied by an ACL, a sentinel of the wrong
            # type) must not make the whole layer unavailable: errors come back as values.
            replies = pipe.execute(raise_on_error=False)
            if keys and isinstance(replies[0], Exception):
                raise replies[0]
        except (redis.RedisError, OSError) as exc:
            return RedisSnapshot(error=self._failed("read positions", exc))
        self._recovered()
        values: list[Any] = replies[0] if keys else []
        raw_sentinel, info = replies[-2], replies[-1]
        if isinstance(raw_sentinel, list):
            raw_sentinel = {
                f: v for f, v in zip(fields, raw_sentinel, strict=True) if v is not None
            }
        for name, reply in (("the sentinel", raw_sentinel), ("INFO server", info)):
            if isinstance(reply, Exception):
                self._warn_once(
                    f"reply:{name}",
                    "redis at %s: reading %s failed (%s); loss detection is limited",
                    self.where,
                    name,
                    reply,
                )
        positions: dict[str, SyncPosition] = {}
        unreadable: dict[str, str] = {}
        for store, value in zip(ids, values, strict=True):
            if value is None:
                continue
            try:
                positions[store] = position_from_fields(store, json.loads(value), source="redis")
            except (ValueError, InvalidStoredPosition) as exc:
                unreadable[store] = str(exc)
                self._warn_key(store, str(exc))
        run_id = info.get("run_id") if isinstance(info, Mapping) else None
        self._run_id = str(run_id) if run_id else self._run_id
        sentinel = _parse_sentinel(raw_sentinel)
        return RedisSnapshot(
            positions=positions,
            sentinel=sentinel,
            run_id=str(run_id) if run_id else None,
            unreadable=unreadable,
            generation=sentinel.generation if sentinel else None,
        )

    snapshot = read_many

    def read(self, store: StoreId) -> RedisRead:
        """One store's position (a snapshot of one store, so still one round trip)."""
        return self.read_many([store]).lookup(store)

    # -- writes --------------------------------------------------------------------------

    def write(self, position: SyncPosition, *, recovery: bool = False) -> Written:
        """Write one position (and the sentinel); falsy when Redis was skipped or failed."""
        return self.write_many([position], recovery=recovery)

    def write_many(
        self,
        positions: Sequence[SyncPosition],
        *,
        recovery: bool = False,
        generation: str | None = None,
    ) -> Written:
        """Write positions and the sentinel in one MULTI/EXEC; falsy if skipped or failed.

        ``recovery`` marks positions restored from a lower layer: it bumps the sentinel's
        epoch, so a later loss of the same keys is told apart from this one. Redis is the
        layer that makes generations: ``generation`` is not used, and the answer carries
        the sentinel's.
        """
        if not positions:
            return Written()
        if not self.available:
            logger.debug("redis: skipping the write of %d positions (unavailable)", len(positions))
            return Written(error="unavailable (waiting after a failure)")
        now = format_timestamp(utc_now())
        if self._run_id is None:
            # Every write records the run_id Redis runs under, even from a fresh layer
            # that has not read yet: a restart is recognised by it changing.
            self._read_run_id()
        try:
            pipe = self.client.pipeline(transaction=True)
            for position in positions:
                value = json.dumps(position_fields(position), separators=(",", ":"))
                pipe.set(self.key(position.store), value, ex=self.ttl_seconds)
            pipe.hsetnx(self.sentinel_key, "generation", secrets.token_hex(8))
            pipe.hsetnx(self.sentinel_key, "origin", "recovery" if recovery else "sync")
            mapping: dict[str, str] = {"written_at": now}
            if self._run_id:
                mapping["run_id"] = self._run_id
            mapping.update({f"{STORE_FIELD_PREFIX}{p.store}": now for p in positions})
            pipe.hset(self.sentinel_key, mapping=mapping)  # type: ignore[arg-type]
            if recovery:
                pipe.hincrby(self.sentinel_key, "epoch", 1)
            pipe.hget(self.sentinel_key, "generation")
            replies = pipe.execute()
            if replies[len(positions)] == 1:
                # This write created the sentinel (Redis lost the previous one, perhaps by
                # restarting since our last read): record the run_id Redis has now.
                self._record_run_id()
        except (redis.RedisError, OSError) as exc:
            return Written(error=self._failed(f"write {len(positions)} positions", exc))
        self._recovered()
        return Written(generation=str(replies[-1]) if replies[-1] else None)

    def coalescing(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to gather: a write is one round trip already."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.close()

    # -- failure handling ----------------------------------------------------------------

    def _failed(self, action: str, exc: BaseException) -> str:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._down_until = time.monotonic() + self.retry_after
        self._was_down = True
        if not self._warned:
            self._warned = True
            logger.warning(
                "redis at %s is unavailable (%s while trying to %s); positions are read "
                "from the JSON backup and the database and Redis writes are skipped. "
                "Check that Redis is running; this warning is not repeated.",
                self.where,
                reason,
                action,
            )
        else:
            logger.debug("redis at %s still unavailable (%s)", self.where, reason)
        return reason

    def _read_run_id(self) -> bool:
        """Ask Redis for its run_id (INFO server); False when it could not be read."""
        try:
            info = self.client.info("server")
        except redis.ResponseError as exc:  # INFO denied by an ACL: run without it
            self._warn_once(
                "info",
                "redis at %s: INFO server refused (%s); a restart of "
                "Redis is then only seen as a flush",
                self.where,
                exc,
            )
            return False
        except (redis.RedisError, OSError) as exc:
            # The positions are written; the next read or write finds Redis as it is.
            logger.debug("redis at %s: reading the run_id failed (%s)", self.where, exc)
            return False
        run_id = info.get("run_id") if isinstance(info, Mapping) else None
        if run_id:
            self._run_id = str(run_id)
        return bool(run_id)

    def _record_run_id(self) -> None:
        if self._read_run_id():
            with contextlib.suppress(redis.RedisError, OSError):
                self.client.hset(self.sentinel_key, "run_id", str(self._run_id))

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._warned_keys:
            self._warned_keys.add(topic)
            logger.warning(message, *args)

    def _recovered(self) -> None:
        if self._was_down:
            self._was_down = False
            logger.info("redis at %s is reachable again", self.where)

    def _warn_key(self, store: StoreId, reason: str) -> None:
        if f"key:{store}" not in self._warned_keys:
            self._warned_keys.add(f"key:{store}")
            logger.warning(
                "store %s: Redis key %s is unreadable (%s); it is ignored and the "
                "position comes from the next layer",
                store,
                self.key(store),
                reason,
            )


def _parse_sentinel(raw: object) -> Sentinel | None:
    if not isinstance(raw, Mapping) or not raw.get("generation"):
        return None
    try:
        epoch = int(raw.get("epoch", 0))
    except (TypeError, ValueError):
        epoch = 0
    run_id = raw.get("run_id") or None
    return Sentinel(
        generation=str(raw["generation"]),
        run_id=str(run_id) if run_id else None,
        epoch=epoch,
        written_at=parse_timestamp(raw.get("written_at")),
        stores={
            str(k)[len(STORE_FIELD_PREFIX) :]: str(v)
            for k, v in raw.items()
            if str(k).startswith(STORE_FIELD_PREFIX)
        },
        origin=str(raw.get("origin") or "sync"),
    )


def _redact(url: str) -> str:
    """The URL without a password, for log lines."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
