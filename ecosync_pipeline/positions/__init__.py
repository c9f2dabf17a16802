"""Sync positions: the model, the three layers, the fallback chain, loss detection.

    model           SyncPosition (a frozen dataclass), PositionSource, PositionStatus
    redis_layer     layer 1: one key per store and a sentinel (RedisLayer)
    json_layer      layer 2: the JSON backup file, on any fsspec filesystem (JsonBackup)
    database_layer  layer 3: a position computed from the orders database (DatabaseLayer)
    verify          a position checked on the API with the page locator
    chain           the fallback chain composing the layers (PositionChain)
    health          loss detection (probe, detect_cache_loss) and status reports
    factory         the layers and the chain built from Settings

Nothing here imports Dagster; ecosync_pipeline.defs adapts it.
"""

from __future__ import annotations

from ecosync_pipeline.positions.chain import (
    LayerOutcome,
    LayerPositions,
    PositionChain,
    ResolvedPosition,
    RestoreReport,
    SaveResult,
)
from ecosync_pipeline.positions.database_layer import DatabaseLayer
from ecosync_pipeline.positions.health import (
    LossReport,
    StatusReport,
    StoreStatus,
    detect_cache_loss,
    probe,
    status_report,
)
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import PositionSource, PositionStatus, SyncPosition
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisLayer, RedisSnapshot
from ecosync_pipeline.positions.verify import Verified, verify

__all__ = [
    "UNAVAILABLE",
    "DatabaseLayer",
    "JsonBackup",
    "LayerOutcome",
    "LayerPositions",
    "LossReport",
    "PositionChain",
    "PositionSource",
    "PositionStatus",
    "RedisLayer",
    "RedisSnapshot",
    "ResolvedPosition",
    "RestoreReport",
    "SaveResult",
    "StatusReport",
    "StoreStatus",
    "SyncPosition",
    "Verified",
    "detect_cache_loss",
    "probe",
    "status_report",
    "verify",
]
