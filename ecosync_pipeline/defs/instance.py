"""A Dagster instance that keeps its database connections open in every process.

dagster-postgres opens and closes a connection for each statement it writes (no pool),
so that a process holds nothing between writes. Creating a run of a batch of stores
writes a planned event per store: on this project's 2-core machine, 1,000 stores' worth
took 6.5 s in the daemon, most of it connecting, before any run could start; with one
held connection per storage (and a few more while threads write at once) it took 1.8 s.
The webserver holds connections the same way (Dagster calls this for it); the daemon, the
code servers and the runs do not, so this class does it for every process that loads the
instance.

Used by data/dagster-production.yaml and data/dagster-celery.yaml::

    instance_class:
      module: ecosync_pipeline.defs.instance
      class: PooledInstance

With SQLite storage (data/dagster.yaml) there is nothing to hold, and it is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData

# Connections per storage beyond the one held, while several threads write at once
# (the daemon submits and launches runs side by side); closed again when returned.
MAX_OVERFLOW = 8
RECYCLE_SECONDS = 3600


class PooledInstance(DagsterInstance):
    """DagsterInstance whose run, event log and schedule storages hold a connection each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # statement_timeout 0: no limit, as in a run (the webserver sets one for queries).
        self.optimize_for_webserver(
            statement_timeout=0, pool_recycle=RECYCLE_SECONDS, max_overflow=MAX_OVERFLOW
        )

    def dispose(self) -> None:
        """Close the held connections too.

        Code servers open an instance for each schedule and sensor tick and Celery workers
        one for each run, and dispose it after; dagster-postgres' storages do not close
        their engines (they hold nothing without a pool), so the connections would stay
        open until the garbage collector found them.
        """
        super().dispose()
        for storage in (self._run_storage, self._event_storage, self._schedule_storage):
            engine = getattr(storage, "_engine", None)  # dagster-postgres' own attribute
            if engine is not None:
                engine.dispose()

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """No settings of its own: the rest of dagster.yaml is DagsterInstance's."""
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        """DagsterInstance's defaults for whatever dagster.yaml leaves out."""
        return InstanceRef.config_defaults(base_dir)
