"""Where a store's secrets come from: an environment variable or a file, read when used.

Each secret of a store (its EcoManager token, its webhook secret) is named in the stores
file by exactly one source, never by value:

    token_env: ECOSYNC_TOKEN_NATUR           the variable holding it
    token_file: /run/secrets/natur_token     or the file holding it, alone

A file holds one secret (the convention of Docker and Kubernetes secrets, which mount
each as a file), and it is read every time the secret is used: a rotated token reaches
the next client built, with no restart. A file that is missing, unreadable, empty or
too large fails the store that names it, with the store, the file and what to do; its
content is never quoted in an error or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecosync_pipeline.errors import ConfigError, SecretFileError

VARIABLE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SECRET_BYTES = 64 * 1024
"""A secret is a token or a key; a larger file is the wrong file, and is not read whole."""


@dataclass(frozen=True)
class SecretSource:
    """Where one secret is read: an environment variable (``env``) or a file (``file``)."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        """Where the secret is read, in words for an error message."""
        if self.file is not None:
            return f"file {self.file}"
        return f"environment variable {self.env}"


def secret_source(
    raw: Mapping[str, Any], env_key: str, file_key: str, store: str
) -> SecretSource | None:
    """The source ``raw`` (a store's entry) names for one secret, or None if it names none.

    ConfigError, naming the store, when it names both, or a value that is not a variable
    name or an absolute path: the secret itself never goes in the stores file.
    """
    env, file = raw.get(env_key), raw.get(file_key)
    if env is not None and file is not None:
        raise ConfigError(
            f"store {store}: give {env_key} or {file_key}, not both (one source per secret)"
        )
    if env is not None:
        if not isinstance(env, str) or not VARIABLE_PATTERN.fullmatch(env):
            raise ConfigError(
                f"store {store}: {env_key} must name an environment variable "
                "(the secret itself never goes in the stores file)"
            )
        return SecretSource(env=env)
    if file is not None:
        if not isinstance(file, str) or not Path(file).is_absolute() or "\n" in file:
            raise ConfigError(
                f"store {store}: {file_key} must be the absolute path of a file holding the "
                "secret alone (e.g. /run/secrets/ecosync_token), not the secret itself"
            )
        return SecretSource(file=file)
    return None


def read_secret_file(path: str, *, store: str, key: str) -> str:
    """The secret held in ``path``, without surrounding whitespace (a trailing newline).

    SecretFileError naming the store, ``key`` (the stores file's field) and the file
    when it cannot be read, is empty, too large or not text.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(store, key, path, f"cannot be read ({exc.strerror})") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(store, key, path, f"is larger than {MAX_SECRET_BYTES} bytes")
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFileError(store, key, path, "is not UTF-8 text") from None
    if not secret:
        raise SecretFileError(store, key, path, "is empty")
    return secret


def read_secret(
    source: SecretSource,
    *,
    store: str,
    key: str,
    environ: Mapping[str, str],
) -> str | None:
    """The secret from its source now, or None when its variable is unset or empty.

    ``key`` names the stores file's field of a file source, for its errors.
    """
    if source.file is not None:
        return read_secret_file(source.file, store=store, key=key)
    value = environ.get(source.env or "", "")
    return value or None
