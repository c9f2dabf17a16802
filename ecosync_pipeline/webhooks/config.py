"""Which stores receive webhooks, and their secrets (read from the environment, never the file).

A store takes webhooks when its entry in the stores file names the variable holding the
secret its webhooks are registered with:

    - identifier: NATUR
      ...
      webhook_secret_env: ECOSYNC_WEBHOOK_SECRET_NATUR
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ecosync_pipeline.config import Store
from ecosync_pipeline.errors import ConfigError, MissingWebhookSecret

SECRET_ENV_KEY = "webhook_secret_env"
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EVENTS = (
    "OrderCreated",
    "OrderDeleted",
    "OrderStatusChanged",
    "OrderConfirmationStatusChanged",
    "OrderShippingStatusChanged",
)
"""The events of the contract; the original system registered only two of them."""


def secret_variable(store: Store) -> str | None:
    """The name of the store's webhook secret variable, or None when it takes no webhooks."""
    name = store.extra.get(SECRET_ENV_KEY)
    if name is None:
        return None
    if not isinstance(name, str) or not _VARIABLE.match(name):
        raise ConfigError(
            f"store {store.identifier}: {SECRET_ENV_KEY} must name an environment variable "
            "(the secret itself never goes in the stores file)"
        )
    return name


def webhook_secret(store: Store, environ: Mapping[str, str] | None = None) -> str:
    """The store's webhook secret; MissingWebhookSecret naming what to set when there is none."""
    variable = secret_variable(store)
    env = os.environ if environ is None else environ
    value = env.get(variable, "") if variable else ""
    if not value:
        raise MissingWebhookSecret(store.identifier, variable)
    return value


def webhook_stores(stores: list[Store]) -> list[Store]:
    """The stores that take webhooks (those naming a secret variable)."""
    return [s for s in stores if secret_variable(s) is not None]
