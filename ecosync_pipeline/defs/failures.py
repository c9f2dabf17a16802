"""Our errors as Dagster failures: the store and the remedy in the description."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Failure

from ecosync_pipeline.errors import EcosyncError, StoreLocked


def as_failure(exc: EcosyncError, store: str | None = None) -> Failure:
    """The Failure that reports ``exc``; the core's messages already name what to do."""
    where = f"store {store}: " if store and f"store {store}" not in str(exc) else ""
    if isinstance(exc, StoreLocked):
        description = (
            f"store {exc.store}: another run holds this store's sync lock, so this run "
            "synced nothing. Let that run finish; the next scheduled run continues from "
            "where it stops."
        )
    else:
        description = f"{type(exc).__name__}: {where}{exc}"
    metadata: dict[str, str] = {"error": type(exc).__name__}
    if store:
        metadata["store"] = store
    metadata["retryable"] = "yes" if exc.retryable else "no"
    # Only an outage (API or database away) may pass by itself; a retry of a bad token, a
    # bad config, a payload that breaks the contract or a held lock fails the same way.
    return Failure(description=description, metadata=metadata, allow_retries=exc.retryable)


@contextmanager
def reported(store: str | None = None) -> Iterator[None]:
    """Run a block, turning any EcosyncError into a Failure naming ``store``."""
    try:
        yield
    except EcosyncError as exc:
        raise as_failure(exc, store) from exc
