"""The ways a simulated store can be read, each building the JSON body a server sends.

- ascending pages (the contract's baseline): ``?page=N&per_page=M``, Laravel's
  length-aware paginator (``meta.total``, ``meta.last_page``, links to every page);
- newest first with page numbers: ``?sort=-id&page=N`` (``sort=id`` is the baseline
  order), optionally ``created_at_from=YYYY-MM-DD``; the same paginator;
- newest first with a keyset cursor: ``?sort_direction=desc[&cursor=C]`` (``asc``
  too), Laravel's cursor paginator: ``meta.next_cursor`` and ``meta.prev_cursor``,
  ``links.next`` and ``links.prev`` carrying the cursor, no total and no last page;
- one order: ``GET .../orders/{id}``, a Laravel resource ``{"data": order}``.

A cursor is what Laravel's ``Cursor::encode`` makes: URL-safe base64 (no padding) of
JSON such as ``{"id": 905448, "_pointsToNextItems": true}``. The next page is "ids
below 905448" (descending), whatever was deleted or added meanwhile. As in Laravel, a
cursor that does not decode is ignored and the first page is served.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from ecosync_pipeline.config import DEFAULT_PER_PAGE, MAX_PER_PAGE
from ecosync_pipeline.lab.simulator.store import SimStore

ReadMode = Literal["pages", "pages_desc", "cursor", "order"]
"""How one request read the store (recorded with each request)."""


class InvalidQuery(ValueError):
    """A query parameter a server would refuse with 422 (the message says which)."""


@dataclass(frozen=True)
class Cursor:
    """A decoded keyset cursor: the id it points from, and which way."""

    id: int
    points_to_next: bool

    def encode(self) -> str:
        """Laravel's encoding: URL-safe base64 of the JSON, without padding."""
        raw = json.dumps({"id": self.id, "_pointsToNextItems": self.points_to_next})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """The cursor ``text`` encodes, or None when it is absent or does not decode."""
        if not text:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = json.loads(raw)
        except (binascii.Error, ValueError):
            return None
        if not isinstance(value, dict):
            return None
        order_id, forward = value.get("id"), value.get("_pointsToNextItems")
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            return None
        if not isinstance(forward, bool):
            return None
        return cls(order_id, forward)


@dataclass(frozen=True)
class Query:
    """One orders request's parameters, as the store's switches let it read them."""

    mode: ReadMode
    page: int
    per_page: int
    descending: bool = False
    cursor: Cursor | None = None
    created_from: datetime | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], *, cursor_mode: bool, sort_mode: bool) -> Query:
        """Read the parameters; those of a mode the store lacks are ignored, as a server
        without that mode ignores unknown parameters. Raises InvalidQuery."""
        page = max(1, _int(params.get("page")) or 1)
        per_page = _int(params.get("per_page")) or DEFAULT_PER_PAGE
        # Laravel's paginator: a bad per_page is the default, a large one is capped.
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        created_from = None
        if sort_mode and params.get("created_at_from"):
            created_from = _date(params["created_at_from"])
        direction = params.get("sort_direction")
        if cursor_mode and (direction is not None or "cursor" in params):
            if direction not in (None, "asc", "desc"):
                raise InvalidQuery("The selected sort direction is invalid (use asc or desc).")
            return cls(
                "cursor",
                page,
                per_page,
                descending=direction == "desc",
                cursor=Cursor.decode(params.get("cursor")),
                created_from=created_from,
            )
        descending = sort_mode and params.get("sort") == "-id"
        return cls(
            "pages_desc" if descending else "pages",
            page,
            per_page,
            descending=descending,
            created_from=created_from,
        )


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _date(raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(
            f"The created at from field must be a valid date (YYYY-MM-DD), got {raw[:40]!r}."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def orders_body(st: SimStore, query: Query, path: str) -> dict[str, Any]:
    """The body of one orders request read the way ``query`` says."""
    low = 0 if query.created_from is None else st.first_index_created_from(query.created_from)
    if query.mode == "cursor":
        return _cursor_body(st, query, path, low)
    return _pages_body(st, query, path, low)


def _pages_body(st: SimStore, query: Query, path: str, low: int) -> dict[str, Any]:
    """Laravel's length-aware paginator over positions [low, len) of the store."""
    page, per_page = query.page, query.per_page
    total = len(st) - low
    last_page = max(1, math.ceil(total / per_page))
    if query.descending:
        stop = len(st) - (page - 1) * per_page
        ids = st.positions(max(low, stop - per_page), stop)[::-1] if stop > low else []
    else:
        start = low + (page - 1) * per_page
        ids = st.positions(start, min(len(st), start + per_page))
    data = [st.order(order_id) for order_id in ids]
    first = (page - 1) * per_page + 1 if data else None
    extra = _extra_params(query)

    def link(number: int) -> str:
        return f"{path}?{urlencode({**extra, 'page': number, 'per_page': per_page})}"

    return {
        "data": data,
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last_page else None,
        },
        "meta": {
            "current_page": page,
            "last_page": last_page,
            "per_page": per_page,
            "total": total,
            "from": first,
            "to": first + len(data) - 1 if first is not None else None,
            "path": path,
        },
    }


def _cursor_body(st: SimStore, query: Query, path: str, low: int) -> dict[str, Any]:
    """Laravel's cursor paginator: per_page + 1 rows tell whether there are more."""
    cursor, per_page = query.cursor, query.per_page
    # "Forward" is the reading direction: descending ids for sort_direction=desc.
    forward = cursor is None or cursor.points_to_next
    toward_low_ids = forward == query.descending
    if cursor is None:
        bound = len(st) if query.descending else low
    else:
        rank, present = st.rank(cursor.id)
        bound = rank if toward_low_ids else rank + int(present)
    if toward_low_ids:
        rows = st.positions(max(low, bound - per_page - 1), bound)[::-1]
    else:
        rows = st.positions(max(low, bound), bound + per_page + 1)
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    if not forward:
        rows.reverse()  # read backwards, shown in the reading order
    next_cursor = prev_cursor = None
    if rows and not (forward and not has_more):
        next_cursor = Cursor(rows[-1], True).encode()
    if rows and cursor is not None and not (not forward and not has_more):
        prev_cursor = Cursor(rows[0], False).encode()
    extra = {**_extra_params(query), "per_page": per_page}

    def link(value: str | None) -> str | None:
        return None if value is None else f"{path}?{urlencode({**extra, 'cursor': value})}"

    return {
        "data": [st.order(order_id) for order_id in rows],
        "links": {
            "first": None,
            "last": None,
            "prev": link(prev_cursor),
            "next": link(next_cursor),
        },
        "meta": {
            "path": path,
            "per_page": per_page,
            "next_cursor": next_cursor,
            "prev_cursor": prev_cursor,
        },
    }


def _extra_params(query: Query) -> dict[str, str]:
    """The parameters a link repeats so the next page is read the same way."""
    extra: dict[str, str] = {}
    if query.mode == "cursor":
        extra["sort_direction"] = "desc" if query.descending else "asc"
    elif query.descending:
        extra["sort"] = "-id"
    if query.created_from is not None:
        extra["created_at_from"] = query.created_from.date().isoformat()
    return extra


def order_body(st: SimStore, order_id: int) -> dict[str, Any] | None:
    """``{"data": order}`` as the single-order endpoint serves it, or None (404)."""
    return {"data": st.order(order_id)} if st.contains(order_id) else None
