"""Which stores receive webhooks, and their secrets (never in the stores file).

A store takes webhooks when its entry in the stores file names where the secret its
webhooks are registered with is read: a variable, or a file holding it alone (read at
every delivery, so a rotated secret needs no restart; see ecosync_pipeline.secrets):

    - identifier: NATUR
      ...
      webhook_secret_env: ECOSYNC_WEBHOOK_SECRET_NATUR
      # or: webhook_secret_file: /run/secrets/natur_webhook_secret
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import MissingWebhookSecret
from ecosync_pipeline.secrets import SecretSource, read_secret, secret_source

SECRET_ENV_KEY = "webhook_secret_env"
SECRET_FILE_KEY = "webhook_secret_file"

EVENTS = (
    "OrderCreated",
    "OrderDeleted",
    "OrderStatusChanged",
    "OrderConfirmationStatusChanged",
    "OrderShippingStatusChanged",
)
"""The events of the contract; the original system registered only two of them."""


def secret_location(store: Store) -> SecretSource | None:
    """Where the store's webhook secret is read, or None when it takes no webhooks.

    ConfigError, naming the store, for both keys at once or a value that is not a
    variable name or an absolute path.
    """
    return secret_source(store.extra, SECRET_ENV_KEY, SECRET_FILE_KEY, store.identifier)


def secret_variable(store: Store) -> str | None:
    """The name of the store's webhook secret variable (None: none, or a file holds it)."""
    source = secret_location(store)
    return source.env if source is not None else None


def webhook_secret(store: Store, environ: Mapping[str, str] | None = None) -> str:
    """The store's webhook secret, read now; MissingWebhookSecret naming what to set when
    there is none, SecretFileError naming the file when it cannot give it."""
    source = secret_location(store)
    env = os.environ if environ is None else environ
    value = (
        read_secret(source, store=store.identifier, key=SECRET_FILE_KEY, environ=env)
        if source is not None
        else None
    )
    if value is None:
        raise MissingWebhookSecret(store.identifier, source.env if source else None)
    return value


def webhook_stores(stores: list[Store]) -> list[Store]:
    """The stores that take webhooks (those naming where their secret is read)."""
    return [s for s in stores if secret_location(s) is not None]
