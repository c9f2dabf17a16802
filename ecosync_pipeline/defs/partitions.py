"""One partition per store, read from the stores file when the code location loads."""

from __future__ import annotations

from dagster import StaticPartitionsDefinition

from ecosync_pipeline.config import Settings


def store_partitions(settings: Settings) -> StaticPartitionsDefinition:
    """The stores of ``settings.stores_file`` as static partitions, in file order.

    Raises ConfigError (with the file, line and reason) when the file is missing or
    wrong, so the code location fails to load and says why, rather than loading with
    no stores.
    """
    return StaticPartitionsDefinition([store.identifier for store in settings.stores()])
