"""The configuration surface: four environment variables and the stores file.

Secrets are never in the stores file: each store names where its token is read
(``token_env`` or ``token_file``, see ecosync_pipeline.secrets), when it is used.

Nothing here runs at import time; callers build Settings when they need them, so the
demo, the tests and a deployment can each point ecosync elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NewType, get_args
from urllib.parse import urlsplit

import yaml

from ecosync_pipeline.errors import ConfigError, MissingToken
from ecosync_pipeline.ratebudget import RateBudget, parse_rate_budget
from ecosync_pipeline.secrets import SecretSource, read_secret, secret_source

# Matched with fullmatch: "$" alone would also accept a trailing newline ("S1\n").
STORE_ID_PATTERN = re.compile(r"[A-Za-z0-9]{1,32}")
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
DEFAULT_REQUESTS_PER_SECOND = 4.0
DEFAULT_FINAL_STATES = ("Livré", "Annulé", "Retourné")
DEFAULT_RECONCILE_CALLS_PER_DAY = 2000

ReadMode = Literal["pages", "cursor"]
"""How a store's incremental sync reads EcoManager: ascending pages from a stored
position (the contract's baseline), or newest first with the keyset cursor."""
READ_MODES: tuple[str, ...] = get_args(ReadMode)
DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024
"""A page of 100 orders is a few hundred KB; a body past this is refused, not read whole."""
MIN_MAX_PAGE_BYTES = 64 * 1024


StoreId = NewType("StoreId", str)
"""A store identifier known to be 1 to 32 letters or digits.

Identifiers end up in Redis keys, file names, file contents and SQL (DESIGN, invariant
7), so every function that puts one there takes a StoreId, and mypy refuses a plain str.
A StoreId is made by validate_store_identifier alone, called where outside input comes
in: the stores file, a command's argument, a webhook's URL, a Dagster partition key
(find_store), an entry of the backup file. Values read back from our own database or
Redis were StoreIds when written."""


def validate_store_identifier(identifier: object) -> StoreId:
    """The identifier as a StoreId if it is 1 to 32 letters or digits, else ConfigError."""
    if not isinstance(identifier, str) or not STORE_ID_PATTERN.fullmatch(identifier):
        shown = repr(identifier)
        shown = shown if len(shown) <= 40 else f"{shown[:40]}..."
        raise ConfigError(f"store identifier {shown} is invalid: use 1 to 32 letters or digits")
    return StoreId(identifier)


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash, or ConfigError; the error never echoes user info.

    A base_url must be http(s) with a host and no ``user:password@``: credentials in a
    URL end up in logs and error messages, and EcoManager authenticates by token.
    """
    base = url.rstrip("/")
    try:
        parts = urlsplit(base)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"base_url is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        raise ConfigError(
            "base_url must not hold user info (user:password@); EcoManager authenticates "
            "with the token in token_env: remove the credentials from the URL"
        )
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"base_url must start with http:// or https:// and name a host, got {base!r}"
        )
    return base


@dataclass(frozen=True)
class Store:
    """One EcoManager store as configured in the stores file."""

    identifier: StoreId
    name: str
    base_url: str
    token_env: str | None = None
    """The variable holding the store's token; or ``token_file`` names the file (one of two)."""
    per_page: int = DEFAULT_PER_PAGE
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    import_per_page: int = MAX_PER_PAGE
    """Page size of a first import (fewer calls); incremental syncs use ``per_page``."""
    read_mode: ReadMode = "pages"
    final_states: tuple[str, ...] = DEFAULT_FINAL_STATES
    """Order states that never change again; orders in any other state are re-read."""
    reconcile_calls_per_day: int = DEFAULT_RECONCILE_CALLS_PER_DAY
    """API calls the reconciliation of this store may spend a day."""
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    """The largest response body read for one page; a larger one fails the page."""
    rate_budget: RateBudget | None = None
    """Calls per window for every process together (ecomanager/budget.py); None follows
    ``requests_per_second`` in the original proportions (see ``budget``)."""
    token_file: str | None = None
    """The file holding the store's token alone, read at every use (a rotation needs no
    restart); exclusive with ``token_env``."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def budget(self) -> RateBudget:
        """The store's rate budget: ``rate_budget``, or 4/s, 40/min, 800/h and 8,000/day
        scaled by ``requests_per_second`` (a store at 4 gets exactly those)."""
        if self.rate_budget is not None:
            return self.rate_budget
        return RateBudget.derived(max(1, int(self.requests_per_second)))

    def __post_init__(self) -> None:
        # A Store made anywhere (a test, the lab) holds a valid identifier all the same.
        validate_store_identifier(self.identifier)
        if (self.token_env is None) == (self.token_file is None):
            raise ConfigError(
                f"store {self.identifier}: give token_env or token_file (exactly one): "
                "where the store's token is read"
            )

    @property
    def token_source(self) -> SecretSource:
        """Where the token is read (its variable or its file), for errors that name it."""
        return SecretSource(env=self.token_env, file=self.token_file)

    def token(self, environ: Mapping[str, str] | None = None) -> str:
        """The store's API token, read now from its variable or its file.

        MissingToken when the variable is unset; SecretFileError, naming the store and
        the file, when the file cannot give it.
        """
        env = os.environ if environ is None else environ
        value = read_secret(self.token_source, store=self.identifier, key="token_file", environ=env)
        if value is None:
            raise MissingToken(self.identifier, str(self.token_env))
        return value


def _page_size(raw: dict[str, Any], key: str, default: int, where: str, store: str) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PER_PAGE:
        raise ConfigError(
            f"{where}: store {store}: {key} must be an integer from 1 to {MAX_PER_PAGE}, "
            f"got {value!r}"
        )
    return value


def _store_from_node(raw: Any, line: int, source: str) -> Store:
    where = f"{source}, line {line}"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: each store must be a mapping with identifier, name, base_url and token_env"
        )
    missing = [k for k in ("identifier", "name", "base_url") if k not in raw]
    if "token_env" not in raw and "token_file" not in raw:
        missing.append("token_env (or token_file)")
    if missing:
        raise ConfigError(f"{where}: store is missing {', '.join(missing)}")
    try:
        identifier = validate_store_identifier(raw["identifier"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        base_url = check_base_url(str(raw["base_url"]))
    except ConfigError as exc:
        raise ConfigError(f"{where}: store {identifier}: {exc}") from None
    token = _token_source(raw, where, identifier)
    per_page = _page_size(raw, "per_page", DEFAULT_PER_PAGE, where, identifier)
    import_per_page = _page_size(raw, "import_per_page", MAX_PER_PAGE, where, identifier)
    rps = raw.get("requests_per_second", DEFAULT_REQUESTS_PER_SECOND)
    if not isinstance(rps, (int, float)) or isinstance(rps, bool) or rps <= 0:
        raise ConfigError(
            f"{where}: store {identifier}: requests_per_second must be a "
            f"positive number, got {rps!r}"
        )
    mirror = _mirror_options(raw, where, identifier)
    known = {
        "read_mode",
        "final_states",
        "reconcile_calls_per_day",
        "max_page_bytes",
        "identifier",
        "name",
        "base_url",
        "token_env",
        "token_file",
        "per_page",
        "import_per_page",
        "requests_per_second",
        "rate_budget",
    }
    return Store(
        identifier=identifier,
        name=str(raw["name"]),
        base_url=base_url,
        token_env=token.env,
        token_file=token.file,
        per_page=per_page,
        requests_per_second=float(rps),
        import_per_page=max(per_page, import_per_page),
        max_page_bytes=_max_page_bytes(raw, where, identifier),
        rate_budget=parse_rate_budget(raw.get("rate_budget"), float(rps), where, identifier),
        **mirror,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _token_source(raw: dict[str, Any], where: str, store: str) -> SecretSource:
    """Where the store's token is read: token_env or token_file (one is present)."""
    try:
        token = secret_source(raw, "token_env", "token_file", store)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    assert token is not None  # a store without either key is refused as incomplete
    return token


def _max_page_bytes(raw: dict[str, Any], where: str, store: str) -> int:
    value = raw.get("max_page_bytes", DEFAULT_MAX_PAGE_BYTES)
    if not isinstance(value, int) or isinstance(value, bool) or value < MIN_MAX_PAGE_BYTES:
        raise ConfigError(
            f"{where}: store {store}: max_page_bytes must be an integer of at least "
            f"{MIN_MAX_PAGE_BYTES}, got {value!r}"
        )
    return value


def _mirror_options(raw: dict[str, Any], where: str, store: str) -> dict[str, Any]:
    """read_mode, final_states and reconcile_calls_per_day of one store, validated."""
    mode = raw.get("read_mode", "pages")
    if mode not in READ_MODES:
        raise ConfigError(
            f"{where}: store {store}: read_mode must be one of {', '.join(READ_MODES)}, "
            f"got {mode!r}"
        )
    finals = raw.get("final_states", list(DEFAULT_FINAL_STATES))
    if not isinstance(finals, list) or not finals or not all(isinstance(f, str) for f in finals):
        raise ConfigError(
            f"{where}: store {store}: final_states must be a list of order state names, "
            f"got {finals!r}"
        )
    budget = raw.get("reconcile_calls_per_day", DEFAULT_RECONCILE_CALLS_PER_DAY)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(
            f"{where}: store {store}: reconcile_calls_per_day must be a positive integer, "
            f"got {budget!r}"
        )
    return {"read_mode": mode, "final_states": tuple(finals), "reconcile_calls_per_day": budget}


# libyaml's loader when PyYAML was built with it: 30 times faster on a large stores file,
# which a sensor may read every tick.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_stores(text: str, source: str = "<stores>") -> list[Store]:
    """Parse the stores YAML; errors name the file, the line and the reason."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if root is None or not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{source}, line 1: expected a mapping with a 'stores' list")
    stores_node = next((v for k, v in root.value if k.value == "stores"), None)
    if not isinstance(stores_node, yaml.SequenceNode):
        raise ConfigError(
            f"{source}, line {root.start_mark.line + 1}: "
            "expected 'stores:' followed by a list of stores"
        )
    loader_data: dict[str, Any] = data if isinstance(data, dict) else {}
    stores: list[Store] = []
    seen: dict[str, int] = {}
    for node, raw in zip(stores_node.value, loader_data["stores"], strict=True):
        line = node.start_mark.line + 1
        store = _store_from_node(raw, line, source)
        if store.identifier in seen:
            raise ConfigError(
                f"{source}, line {line}: store {store.identifier} is already "
                f"defined on line {seen[store.identifier]}"
            )
        seen[store.identifier] = line
        stores.append(store)
    return stores


def find_store(stores: Sequence[Store], identifier: str, source: str) -> Store:
    """The store ``identifier`` names among ``stores`` (read from ``source``): the one
    lookup of a store, by every entry point. The identifier is outside input (a command's
    argument, a URL, a partition key): it is validated before anything else."""
    sid = validate_store_identifier(identifier)
    for store in stores:
        if store.identifier == sid:
            return store
    known = ", ".join(s.identifier for s in stores) or "none"
    raise ConfigError(f"store {sid} is not in {source} (configured: {known})")


_cache: dict[str, tuple[tuple[int, int], list[Store]]] = {}


def load_stores(path: Path | str) -> list[Store]:
    """Read and validate the stores file (parsed again only when the file changes)."""
    p = Path(path)
    try:
        stat = p.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(str(p))
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"stores file {p} cannot be read ({exc.strerror}); set "
            "ECOSYNC_STORES_FILE to the YAML file listing your stores"
        ) from exc
    stores = parse_stores(text, str(p))
    _cache[str(p)] = (stamp, stores)
    return list(stores)


@dataclass(frozen=True)
class Settings:
    """The four settings every entry point (demo, tests, Dagster, CLI) shares."""

    database_url: str
    redis_url: str
    stores_file: str
    backup_path: str

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, root: Path | None = None
    ) -> Settings:
        """Settings from ECOSYNC_* variables, with defaults under ``root/data``."""
        env = os.environ if environ is None else environ
        base = (root or Path.cwd()).resolve()
        data = base / "data"
        return cls(
            database_url=env.get("ECOSYNC_DATABASE_URL") or f"sqlite:///{data / 'ecosync.db'}",
            redis_url=env.get("ECOSYNC_REDIS_URL") or "redis://127.0.0.1:6379/0",
            stores_file=env.get("ECOSYNC_STORES_FILE") or str(data / "stores.yaml"),
            backup_path=env.get("ECOSYNC_BACKUP_PATH")
            or str(data / "sync-positions" / "sync-positions.json"),
        )

    def stores(self) -> list[Store]:
        """The configured stores, validated."""
        return load_stores(self.stores_file)
