"""The resources of the code location, declared once.

Four thin resources mirror the configuration surface (Redis, the orders database,
EcoManager's stores file, the JSON backup); ``EcosyncResource`` composes them and opens
a ``Runtime``, the core's own wiring. Every field defaults to ``None``, meaning "the
ECOSYNC_* variable, or its documented default", read when a run needs it and never at
import, so ``dagster dev`` works with no extra setup.

Secrets never pass through resource config: a database password stays inside
ECOSYNC_DATABASE_URL, and each store's token is read from the variable its ``token_env``
names when its client is built. A deployment that wants Dagster to show where a value
comes from can still pass ``EnvVar("...")`` for any field.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from dagster import ConfigurableResource
from pydantic import Field

from ecosync_pipeline.config import Settings
from ecosync_pipeline.runtime import Runtime

RESOURCE_KEY = "ecosync"


class RedisResource(ConfigurableResource):
    """Layer 1 of the sync positions: the Redis holding each store's position."""

    url: str | None = Field(
        default=None,
        description="Redis URL; default: ECOSYNC_REDIS_URL, else redis://127.0.0.1:6379/0.",
    )


class OrdersDatabaseResource(ConfigurableResource):
    """The orders database, the truth (layer 3 of the sync positions)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql://... or sqlite:///...); default: "
        "ECOSYNC_DATABASE_URL, else sqlite:///data/ecosync.db. Keep passwords in the "
        "environment: pass EnvVar('ECOSYNC_DATABASE_URL') rather than a literal.",
    )


class EcoManagerResource(ConfigurableResource):
    """The EcoManager stores: the stores file; each token comes from its store's token_env."""

    stores_file: str | None = Field(
        default=None,
        description="YAML file listing the stores; default: ECOSYNC_STORES_FILE, else "
        "data/stores.yaml. Tokens are never in it: each store names its token variable.",
    )


class BackupResource(ConfigurableResource):
    """Layer 2 of the sync positions: the JSON backup file (a path or an fsspec URL)."""

    path: str | None = Field(
        default=None,
        description="Backup file; default: ECOSYNC_BACKUP_PATH, else "
        "data/sync-positions/sync-positions.json.",
    )


class EcosyncResource(ConfigurableResource):
    """Everything a run needs to read positions and sync stores, built from the four above."""

    redis: RedisResource
    database: OrdersDatabaseResource
    ecomanager: EcoManagerResource
    backup: BackupResource

    def settings(self) -> Settings:
        """The core's Settings: explicit resource values over the ECOSYNC_* environment."""
        base = Settings.from_env()
        return replace(
            base,
            redis_url=self.redis.url or base.redis_url,
            database_url=self.database.url or base.database_url,
            stores_file=self.ecomanager.stores_file or base.stores_file,
            backup_path=self.backup.path or base.backup_path,
        )

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """Open a Runtime (stores, database, position chain) and close it afterwards."""
        runtime = Runtime.from_settings(self.settings())
        try:
            yield runtime
        finally:
            runtime.close()


def ecosync_resource(settings: Settings | None = None) -> EcosyncResource:
    """The resource for ``settings``, or one that follows the environment when None."""
    if settings is None:
        return EcosyncResource(
            redis=RedisResource(),
            database=OrdersDatabaseResource(),
            ecomanager=EcoManagerResource(),
            backup=BackupResource(),
        )
    return EcosyncResource(
        redis=RedisResource(url=settings.redis_url),
        database=OrdersDatabaseResource(url=settings.database_url),
        ecomanager=EcoManagerResource(stores_file=settings.stores_file),
        backup=BackupResource(path=settings.backup_path),
    )
