"""Sync positions: the model, the three layers, the fallback chain, loss detection.

    model           SyncPosition (a frozen dataclass), PositionSource, PositionStatus
    layer           the interface of a layer (PositionLayer: read_many, write_many)
    redis_layer     layer 1: one key per store and a sentinel (RedisLayer)
    json_layer      layer 2: the JSON backup file, on any fsspec filesystem (JsonBackup)
    database_layer  layer 3: a position computed from the orders database (DatabaseLayer)
    page_size       which page size a run reads, and exact conversion between sizes
    verify          a position checked on the API with the page locator
    chain           the fallback chain over one snapshot of the layers, and classify
    loss            cache-loss events: every kind and its id
    health          the status report of every store and layer
    recovery        the recovery job's steps, and the served-orders audit
    factory         the layers and the chain built from Settings

Nothing here imports Dagster; ecosync_pipeline.defs adapts it.
"""

from __future__ import annotations

from ecosync_pipeline.positions.chain import PositionChain, classify
from ecosync_pipeline.positions.database_layer import DatabaseLayer, DatabaseRead
from ecosync_pipeline.positions.health import StatusReport, StoreStatus, status_report
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.layer import LayerRead, PositionLayer, Written
from ecosync_pipeline.positions.loss import LossReport, detect
from ecosync_pipeline.positions.model import PositionSource, PositionStatus, SyncPosition
from ecosync_pipeline.positions.outcomes import (
    LayerOutcome,
    LayerPositions,
    ResolvedPosition,
    RestoreReport,
    SaveResult,
    Snapshot,
)
from ecosync_pipeline.positions.redis_layer import UNAVAILABLE, RedisLayer, RedisSnapshot
from ecosync_pipeline.positions.verify import Verified, verify

__all__ = [
    "UNAVAILABLE",
    "DatabaseLayer",
    "DatabaseRead",
    "JsonBackup",
    "LayerOutcome",
    "LayerPositions",
    "LayerRead",
    "LossReport",
    "PositionChain",
    "PositionLayer",
    "PositionSource",
    "PositionStatus",
    "RedisLayer",
    "RedisSnapshot",
    "ResolvedPosition",
    "RestoreReport",
    "SaveResult",
    "Snapshot",
    "StatusReport",
    "StoreStatus",
    "SyncPosition",
    "Verified",
    "Written",
    "classify",
    "detect",
    "status_report",
    "verify",
]
