"""The chain a deployment runs, and which stores keep a sync position (those read by pages).

A cursor-mode store reads newest first down to the table's last id
(ecosync_pipeline.sync.cursor), so it has no position to lose or recover. The layers
and the chain themselves are built in one place, ecosync_pipeline.runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

from ecosync_pipeline.config import Store
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.database_layer import DatabaseRead
from ecosync_pipeline.positions.json_layer import BackupRead
from ecosync_pipeline.positions.redis_layer import RedisSnapshot

Chain = PositionChain[RedisSnapshot, BackupRead, DatabaseRead]
"""Redis, the JSON backup, the orders database: each read with its layer's own facts
(Redis's sentinel, the backup's quarantined file, the database's summaries)."""


def page_stores(stores: Sequence[Store]) -> list[Store]:
    """The stores that keep a position (read_mode: pages), the chain's."""
    return [s for s in stores if s.read_mode == "pages"]


def cursor_stores(stores: Sequence[Store]) -> list[str]:
    """The stores that keep no position (read_mode: cursor), for what reports on positions."""
    return [s.identifier for s in stores if s.read_mode == "cursor"]
