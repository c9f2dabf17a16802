"""The stored form of a position, shared by the Redis value and the JSON backup entry.

Both layers keep the original system's camelCase keys (``lastPage``, ``firstId``,
``lastId``, ``timestamp``, ``storeName``, and in the file ``storeIdentifier`` and
``lastOrderId``), so a deployment can switch over with the old data in place. We add
``lastOrderId`` (to Redis), ``perPage``, ``source``, ``verified`` and ``lastIndex``; a value written
by the original system lacks them and is read with the original's meaning: the last
synced id is ``lastId`` and pages hold 20 orders.

The original reads ``lastPage`` as a page of 20 whatever ecosync's page size, so
``lastPage`` is always written in pages of 20: the page of 20 holding the first order of
ecosync's page (so the original, running beside ecosync, never starts past an order it
has not read, and re-reads at most a few). Ecosync's own page, at ``perPage``, goes in
``ecosyncPage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ecosync_pipeline.config import DEFAULT_PER_PAGE, MAX_PER_PAGE, StoreId
from ecosync_pipeline.positions.model import PositionSource, SyncPosition

ORIGINAL_PER_PAGE = DEFAULT_PER_PAGE
"""The page size of positions the original system wrote (it always asked for 20)."""

UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""The time given to a stored position whose timestamp is missing or unreadable."""


class InvalidStoredPosition(ValueError):
    """A stored value that cannot be read as a position (the reason is the message)."""


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a Z, as the original system wrote them."""
    utc = moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime:
    """A stored timestamp as an aware datetime; UNKNOWN_TIME when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return UNKNOWN_TIME
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return UNKNOWN_TIME
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _optional_id(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidStoredPosition(f"{key} is {value!r}, not an order id")
    return value


def original_page(position: SyncPosition) -> int:
    """The position's page in the original's page size: the page of 20 holding the first
    order of the position's page (never past it, whatever the size)."""
    if position.per_page == ORIGINAL_PER_PAGE or position.last_page <= 1:
        return position.last_page
    return (position.last_page - 1) * position.per_page // ORIGINAL_PER_PAGE + 1


def position_fields(position: SyncPosition) -> dict[str, Any]:
    """The stored keys of a position (without storeIdentifier, which the file adds)."""
    return {
        "lastPage": original_page(position),
        "ecosyncPage": position.last_page,
        "firstId": position.first_id,
        "lastId": position.last_id,
        "lastOrderId": position.last_order_id,
        "timestamp": format_timestamp(position.updated_at),
        "storeName": position.store_name,
        "perPage": position.per_page,
        "source": position.source,
        "verified": position.verified,
        "lastIndex": position.last_index,
    }


def position_from_fields(store: StoreId, data: object, *, source: PositionSource) -> SyncPosition:
    """Read stored keys back into a position tagged with the layer it came from.

    Raises InvalidStoredPosition naming the first bad key.
    """
    if not isinstance(data, Mapping):
        raise InvalidStoredPosition(f"value is {type(data).__name__}, not a JSON object")
    # Ours at perPage when we wrote it; the original's (and older ecosync's) lastPage else.
    key = "ecosyncPage" if "ecosyncPage" in data else "lastPage"
    page = data.get(key)
    if not isinstance(page, int) or isinstance(page, bool) or page < 0:
        raise InvalidStoredPosition(f"{key} is {page!r}, not a page number")
    first_id = _optional_id(data, "firstId")
    last_id = _optional_id(data, "lastId")
    # The original system wrote no lastOrderId: its lastId was the last synced order.
    last_order_id = _optional_id(data, "lastOrderId") if "lastOrderId" in data else last_id
    per_page = data.get("perPage", ORIGINAL_PER_PAGE)
    if (
        not isinstance(per_page, int)
        or isinstance(per_page, bool)
        or not (1 <= per_page <= MAX_PER_PAGE)
    ):
        raise InvalidStoredPosition(f"perPage is {per_page!r}, not 1 to {MAX_PER_PAGE}")
    name = data.get("storeName")
    verified = data.get("verified", False)
    index = data.get("lastIndex")
    if index is not None and (
        not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= per_page
    ):
        raise InvalidStoredPosition(f"lastIndex is {index!r}, not 1 to perPage ({per_page})")
    return SyncPosition(
        store=store,
        store_name=name if isinstance(name, str) and name else store,
        last_page=page,
        first_id=first_id,
        last_id=last_id,
        last_order_id=last_order_id,
        updated_at=parse_timestamp(data.get("timestamp")),
        source=source,
        per_page=per_page,
        verified=verified is True,
        last_index=index,
    )
