"""cache_loss_sensor: notice a lost Redis within one tick and launch the recovery job.

Each tick is one Redis round trip (every store's key, the sentinel and the run_id, via
the core's probe) plus a read of the stores file. The orders database is asked only when
the probe cannot decide alone (see positions.recovery.watch): before the sentinel was
ever seen, and when a key is back at page 1 (a reset, or a store without orders?).

The core names every loss with a stable event id; the run_key is built from it, so the
same loss seen on many ticks launches one run and the next loss launches another.
"""

# No `from __future__ import annotations` here: Dagster reads the context parameter's
# annotation at definition time and rejects it as a string.

import json
from collections.abc import Mapping
from dataclasses import dataclass

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ecosync_pipeline.defs.resources import EcosyncResource
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.positions import recovery
from ecosync_pipeline.positions.factory import build_redis
from ecosync_pipeline.storage import StoreSummary, make_engine, store_summaries

DEFAULT_INTERVAL_SECONDS = 30
LOSS_EVENT_TAG = "ecosync/loss-event"
REDIS_STATE_TAG = "ecosync/redis-state"


@dataclass(frozen=True)
class LossCursor:
    """What the sensor keeps between ticks: the sentinel generation, run_id, last event."""

    generation: str | None = None
    run_id: str | None = None
    last_event: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "LossCursor":
        """The cursor from its JSON form; an empty or unreadable cursor starts afresh."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            **{
                k: data.get(k) if isinstance(data.get(k), str) else None
                for k in ("generation", "run_id", "last_event")
            }
        )

    def dump(self) -> str:
        """The JSON form stored by Dagster."""
        return json.dumps(
            {"generation": self.generation, "run_id": self.run_id, "last_event": self.last_event},
            sort_keys=True,
        )


def run_key_for(event_id: str) -> str:
    """The run_key of the recovery run for one loss event."""
    return f"recover:{event_id}"


def _summaries(database_url: str) -> Mapping[str, StoreSummary] | None:
    """Which stores have orders, or None when the database cannot tell us right now."""
    engine = make_engine(database_url)
    try:
        return store_summaries(engine)
    except EcosyncError:
        return None
    finally:
        engine.dispose()


def build_cache_loss_sensor(
    job: JobDefinition, minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS
) -> SensorDefinition:
    """The sensor that launches ``job`` (recover_sync_positions) once per cache loss."""

    @sensor(
        name="cache_loss_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Probes Redis every tick (one round trip) and launches "
        "recover_sync_positions once per loss: a flush, a restart or lost keys.",
    )
    def cache_loss_sensor(
        context: SensorEvaluationContext, ecosync: EcosyncResource
    ) -> SensorResult | SkipReason:
        cursor = LossCursor.parse(context.cursor)
        settings = ecosync.settings()
        try:
            stores = [s.identifier for s in settings.stores()]
        except EcosyncError as exc:
            return SkipReason(f"cannot read the stores: {exc}")
        redis = build_redis(settings)
        try:
            look = recovery.watch(
                redis,
                stores,
                cursor=cursor.generation,
                summaries=lambda: _summaries(settings.database_url),
            )
        finally:
            redis.close()
        return _decide(context, cursor, look, len(stores))

    return cache_loss_sensor


def _decide(
    context: SensorEvaluationContext,
    cursor: LossCursor,
    look: recovery.Watch,
    store_count: int,
) -> SensorResult | SkipReason:
    loss = look.loss
    if loss.unreachable:
        # Keep the cursor: the next reachable tick compares with what was seen before.
        return SkipReason(
            f"Redis is unreachable ({look.redis.error or 'no answer'}); could not look for "
            "a cache loss. Syncs use the JSON backup and the database meanwhile."
        )
    new_cursor = LossCursor(
        generation=loss.cursor or None,
        run_id=loss.run_id,
        last_event=loss.event_id or cursor.last_event,
    )
    if loss.event_id is None:
        reason = (
            f"all {store_count} stores healthy"
            if loss.expected
            else f"no position written to Redis yet for the {store_count} stores: nothing to lose"
        )
        return SensorResult(skip_reason=SkipReason(reason), cursor=new_cursor.dump())
    context.log.info(
        "cache loss %s: Redis %s; without a key: %s; reset: %s",
        loss.event_id,
        loss.redis_state,
        ", ".join(loss.missing) or "none",
        ", ".join(look.resets) or "none",
    )
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key_for(loss.event_id),
                tags={LOSS_EVENT_TAG: loss.event_id, REDIS_STATE_TAG: loss.redis_state},
            )
        ],
        cursor=new_cursor.dump(),
    )
