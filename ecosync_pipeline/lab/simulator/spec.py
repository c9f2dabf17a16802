"""What a simulated store looks like: StoreSpec, its parsing from the stores file, tokens.

A store's orders are described, never listed: ``first_id``, how many orders (``count``)
or up to which id (``last_id``), the share of ids missing (``gap_rate``) and the mean
step between consecutive ids (``stride``). The ids and every order are then computed on
demand from (seed, store, position), so the same spec and seed always serve the same
pages. ``added`` replays orders created since (``Simulator.add_orders``): the same spec,
seed and ``added`` serve the same ids again, so a stores file can describe a store as a
demo left it.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ecosync_pipeline.config import Store, validate_store_identifier
from ecosync_pipeline.errors import ConfigError, EcosyncError

TOKEN_LENGTH = 80
TOKEN_ALPHABET = string.ascii_letters + string.digits
DEFAULT_STARTED = datetime(2021, 3, 1, tzinfo=timezone.utc)
DEFAULT_UNTIL = datetime(2026, 11, 20, 18, 0, tzinfo=timezone.utc)
CATALOGS = ("cosmetics", "jewelry", "home", "fashion", "electronics")


class SimulatorError(EcosyncError):
    """The simulator was asked something it cannot do (unknown store, bad switch, ...)."""


class UnknownStore(SimulatorError):
    """The store named is not one of the simulated stores."""


def demo_token(identifier: str, seed: int = 0) -> str:
    """The 80-character token the simulator expects for a store whose token_env is unset.

    Derived from the seed and the identifier only, so the demo can export the same value
    into the client's environment without any secret being written anywhere.
    """
    out: list[str] = []
    counter = 0
    while len(out) < TOKEN_LENGTH:
        digest = hashlib.blake2b(
            f"ecosync-sim:{seed}:{identifier}:{counter}".encode(), digest_size=64
        ).digest()
        # 248 is the largest multiple of 62 below 256: rejecting above it keeps the
        # characters uniform.
        out.extend(TOKEN_ALPHABET[b % 62] for b in digest if b < 248)
        counter += 1
    return "".join(out[:TOKEN_LENGTH])


def store_key(identifier: str, seed: int) -> int:
    """A 64-bit key for (seed, store): every random choice of a store hashes from it."""
    digest = hashlib.blake2b(f"{seed}:{identifier}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class StoreSpec:
    """The shape of one simulated store's orders.

    Give ``count`` (exact number of orders) or ``last_id`` (the exact highest id; the
    count then follows from the gaps), not both; with neither, 1000 orders. ``stride``
    is the mean step between consecutive candidate ids (1 = dense apart from gaps).
    ``seed`` overrides the simulator's seed for this store. ``added`` orders follow the
    initial ones, with the ids ``add_orders`` gives a fresh store. ``token`` overrides
    the token otherwise read from ``token_env`` (or derived with demo_token).
    """

    identifier: str
    name: str = ""
    first_id: int = 1
    count: int | None = None
    last_id: int | None = None
    gap_rate: float = 0.0
    stride: int = 1
    seed: int | None = None
    added: int = 0
    catalog: str = "cosmetics"
    token_env: str = ""
    token: str | None = field(default=None, repr=False)
    started: datetime = DEFAULT_STARTED
    until: datetime = DEFAULT_UNTIL

    def __post_init__(self) -> None:
        try:
            validate_store_identifier(self.identifier)
        except ConfigError as exc:
            raise SimulatorError(str(exc)) from None
        if not self.name:
            object.__setattr__(self, "name", self.identifier)
        if not self.token_env:
            object.__setattr__(self, "token_env", f"ECOSYNC_TOKEN_{self.identifier}")
        problems = []
        if not _is_int(self.first_id) or self.first_id < 1:
            problems.append(f"first_id must be a positive integer, got {self.first_id!r}")
        if self.count is not None and self.last_id is not None:
            problems.append("give count or last_id, not both")
        if self.count is not None and (not _is_int(self.count) or self.count < 0):
            problems.append(f"count must be an integer >= 0, got {self.count!r}")
        if self.last_id is not None and (not _is_int(self.last_id) or self.last_id < self.first_id):
            problems.append(f"last_id must be an integer >= first_id, got {self.last_id!r}")
        if not isinstance(self.gap_rate, (int, float)) or not 0 <= self.gap_rate < 1:
            problems.append(f"gap_rate must be a number in [0, 1), got {self.gap_rate!r}")
        if not _is_int(self.added) or self.added < 0:
            problems.append(f"added must be an integer >= 0, got {self.added!r}")
        if not _is_int(self.stride) or self.stride < 1:
            problems.append(f"stride must be an integer >= 1, got {self.stride!r}")
        if self.catalog not in CATALOGS:
            problems.append(f"catalog must be one of {', '.join(CATALOGS)}, got {self.catalog!r}")
        if self.until <= self.started:
            problems.append("until must be after started")
        if problems:
            raise SimulatorError(f"simulated store {self.identifier}: " + "; ".join(problems))

    @property
    def order_count(self) -> int | None:
        """The exact number of orders when given as ``count``; None when given as last_id."""
        if self.count is None and self.last_id is None:
            return 1000
        return self.count

    def key(self, simulator_seed: int) -> int:
        """This store's 64-bit hash key under the simulator's seed."""
        return store_key(self.identifier, self.seed if self.seed is not None else simulator_seed)

    def simulator_keys(self) -> dict[str, Any]:
        """The ``simulator:`` mapping of a stores file that rebuilds exactly this spec."""
        keys: dict[str, Any] = {
            "first_id": self.first_id,
            "gap_rate": self.gap_rate,
            "stride": self.stride,
            "catalog": self.catalog,
            "started": self.started.isoformat(),
            "until": self.until.isoformat(),
        }
        if self.count is not None or self.last_id is None:
            keys["count"] = self.order_count
        else:
            keys["last_id"] = self.last_id
        if self.seed is not None:
            keys["seed"] = self.seed
        if self.added:
            keys["added"] = self.added
        return keys

    @classmethod
    def from_store(cls, store: Store) -> StoreSpec:
        """Build a spec from a configured Store and its optional ``simulator:`` mapping."""
        raw = store.extra.get("simulator", {})
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"store {store.identifier}: 'simulator' must be a mapping of {', '.join(SPEC_KEYS)}"
            )
        unknown = sorted(set(raw) - set(SPEC_KEYS))
        if unknown:
            raise ConfigError(
                f"store {store.identifier}: unknown simulator keys "
                f"{', '.join(map(str, unknown))}; use {', '.join(SPEC_KEYS)}"
            )
        kwargs: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("started", "until")}
        for key in ("started", "until"):
            if key in raw:
                kwargs[key] = _parse_date(raw[key], store.identifier, key)
        try:
            return cls(
                identifier=store.identifier, name=store.name, token_env=store.token_env, **kwargs
            )
        except SimulatorError as exc:
            raise ConfigError(f"{exc}; fix the 'simulator:' keys of this store") from None


SPEC_KEYS = (
    "first_id",
    "count",
    "last_id",
    "gap_rate",
    "stride",
    "seed",
    "added",
    "catalog",
    "started",
    "until",
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_date(value: object, identifier: str, key: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(
                f"store {identifier}: simulator.{key} must be an ISO date, got {value!r}"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
