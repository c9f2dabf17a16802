"""Each loss's story in the Dagster instance, so the UI keeps showing it after it ends.

    cache_loss_sensor sees a loss      an observation of restored_sync_positions: when it
                                       was seen, which stores, what Redis shows
    a restore mends it                 the materialization of restored_sync_positions:
                                       the same loss, the layer of each store, the run,
                                       how long from seen to restored, the line
    every record of the positions      store_sync_positions' ``last_loss``: the line of the
                                       loss under way, else of the last one restored

A restore that found nothing to do records no materialization, so the latest one is
always the last real restore and its story.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dagster import (
    AssetObservation,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
)

from ecosync_pipeline.defs.keys import LOSS_SEEN_AT_TAG, RESTORED_SYNC_POSITIONS
from ecosync_pipeline.defs.positions.health import Standing
from ecosync_pipeline.defs.positions.restores import restores_under_way, under_way_said
from ecosync_pipeline.positions.health import StatusReport
from ecosync_pipeline.positions.loss import LossReport
from ecosync_pipeline.positions.story import LossStory

LOSS_EVENT = "loss_event"
SEEN_AT = "loss_seen_at"
RESTORED_AT = "restored_at"
STORIES_LOOKED_AT = 20
"""Observations of restored_sync_positions searched for when a loss was first seen."""


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def _moment(seconds: Any) -> datetime | None:
    if isinstance(seconds, (int, float)):
        return datetime.fromtimestamp(seconds, timezone.utc)
    return None


def story_metadata(story: LossStory, now: datetime) -> dict[str, Any]:
    """The story as metadata: the loss, when seen and restored, the stores, the line."""
    metadata: dict[str, Any] = {
        "story": MetadataValue.text(story.line(now)),
        LOSS_EVENT: MetadataValue.text(story.event_id),
        SEEN_AT: MetadataValue.timestamp(story.seen_at),
        "lost_stores": MetadataValue.text(", ".join(story.stores)),
        "redis_state": MetadataValue.text(story.redis_state),
    }
    if story.restored_at is not None:
        metadata[RESTORED_AT] = MetadataValue.timestamp(story.restored_at)
        metadata["seconds_to_restore"] = MetadataValue.float(round(story.seconds or 0.0, 1))
        metadata["restored_from"] = MetadataValue.json(dict(story.restored_from))
    return metadata


def story_from(metadata: Mapping[str, Any], run_id: str | None) -> LossStory | None:
    """The story a materialization of restored_sync_positions recorded (None: none)."""
    event = _value(metadata, LOSS_EVENT)
    seen = _moment(_value(metadata, SEEN_AT))
    if not isinstance(event, str) or seen is None:
        return None
    restored_from = _value(metadata, "restored_from")
    stores = str(_value(metadata, "lost_stores") or "")
    return LossStory(
        event_id=event,
        seen_at=seen,
        stores=tuple(s.strip() for s in stores.split(",") if s.strip()),
        redis_state=str(_value(metadata, "redis_state") or "ok"),
        restored_from=dict(restored_from) if isinstance(restored_from, Mapping) else {},
        restored_by=run_id,
        restored_at=_moment(_value(metadata, RESTORED_AT)),
    )


def last_story(instance: DagsterInstance) -> LossStory | None:
    """The story of the last restore (the latest materialization of restored_sync_positions)."""
    latest = instance.get_latest_materialization_event(RESTORED_SYNC_POSITIONS)
    if latest is None or latest.asset_materialization is None:
        return None
    return story_from(latest.asset_materialization.metadata, latest.run_id or None)


def first_seen(
    instance: DagsterInstance, event_id: str, tags: Mapping[str, str]
) -> datetime | None:
    """When the loss ``event_id`` was first seen: the sensor's tag on its recovery run, else
    its observation of the loss (a restore by hand after the sensor saw it), else None."""
    tagged = tags.get(LOSS_SEEN_AT_TAG)
    if tagged:
        try:
            return datetime.fromisoformat(tagged)
        except ValueError:
            pass
    records = instance.fetch_observations(
        AssetRecordsFilter(asset_key=RESTORED_SYNC_POSITIONS), limit=STORIES_LOOKED_AT
    ).records
    for record in records:
        observation = record.asset_observation
        if observation is not None and _value(observation.metadata, LOSS_EVENT) == event_id:
            return _moment(_value(observation.metadata, SEEN_AT))
    return None


def loss_observation(story: LossStory, now: datetime, under_way: str) -> AssetObservation:
    """The sensor's record of a loss it has just seen (on restored_sync_positions)."""
    return AssetObservation(
        asset_key=RESTORED_SYNC_POSITIONS,
        description=story.line(now, under_way),
        metadata={
            **story_metadata(story, now),
            "story": MetadataValue.text(story.line(now, under_way)),
        },
    )


def ongoing(loss: LossReport, seen_at: datetime) -> LossStory:
    """The story of a loss not restored yet: when seen, the stores without a position."""
    return LossStory(
        event_id=loss.event_id or "",
        seen_at=seen_at,
        stores=loss.missing + loss.resets,
        redis_state=loss.redis_state,
    )


def lasting(loss: LossReport) -> bool:
    """The loss is under way: stores are without their position (or reset) and no
    restore has mended it yet."""
    return bool(loss.event_id) and not loss.mended and bool(loss.missing or loss.resets)


def standing_for(
    instance: DagsterInstance, report: StatusReport, now: datetime, *, run_id: str | None = None
) -> Standing:
    """What goes with ``report`` as a run records it: the restore under way (other than
    ``run_id``) and the story of the loss under way, else of the last one restored."""
    under_way = under_way_said(restores_under_way(instance, other_than=run_id))
    if lasting(report.loss):
        seen = first_seen(instance, report.loss.event_id or "", {}) or now
        return Standing(under_way, ongoing(report.loss, seen).line(now, under_way))
    story = last_story(instance)
    return Standing(under_way, story.line(now) if story else "")
