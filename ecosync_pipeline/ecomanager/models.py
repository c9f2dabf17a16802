"""The typed order and page that the client hands to the rest of ecosync.

Only ``id`` is certain in the contract; every other field is optional and parsed
leniently, so a server that omits or reshapes a field never stops the sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ecosync_pipeline.errors import MalformedPage


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(value)


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Order:
    """One EcoManager order, with the fields the orders table keeps."""

    id: int
    reference: str | None = None
    order_state_name: str | None = None
    confirmation_state_name: str | None = None
    full_name: str | None = None
    telephone: str | None = None
    wilaya: str | None = None
    commune: str | None = None
    items: tuple[Mapping[str, Any], ...] = ()
    total_products: Decimal | None = None
    total: Decimal | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_payload(cls, data: object, *, store: str, page: int, index: int) -> Order:
        """Parse one element of ``data``; raise MalformedPage naming store, page and field."""
        if not isinstance(data, Mapping):
            raise MalformedPage(
                f"store {store}: page {page}: data[{index}] is {type(data).__name__}, "
                "not an order object",
                store=store,
                page=page,
            )
        raw_id = data.get("id")
        if not isinstance(raw_id, int) or isinstance(raw_id, bool) or raw_id <= 0:
            raise MalformedPage(
                f"store {store}: page {page}: data[{index}] field 'id' is {raw_id!r}, "
                "not a positive integer",
                store=store,
                page=page,
            )
        raw_items = data.get("items")
        items = (
            tuple(i for i in raw_items if isinstance(i, Mapping))
            if isinstance(raw_items, list)
            else ()
        )
        return cls(
            id=raw_id,
            reference=_text(data.get("reference")),
            order_state_name=_text(data.get("order_state_name")),
            confirmation_state_name=_text(data.get("confirmation_state_name")),
            full_name=_text(data.get("full_name")),
            telephone=_text(data.get("telephone")),
            wilaya=_text(data.get("wilaya")),
            commune=_text(data.get("commune")),
            items=items,
            total_products=_decimal(data.get("total_products")),
            total=_decimal(data.get("total")),
            created_at=_datetime(data.get("created_at")),
            updated_at=_datetime(data.get("updated_at")),
        )


@dataclass(frozen=True)
class Page:
    """One page of orders as served, in ascending id order.

    ``last_page`` and ``total`` come from ``meta`` when the server sends it; they are
    hints only.
    """

    store: str
    number: int
    per_page: int
    orders: tuple[Order, ...]
    last_page: int | None = None
    total: int | None = None

    @property
    def ids(self) -> list[int]:
        return [o.id for o in self.orders]

    @property
    def first_id(self) -> int | None:
        return self.orders[0].id if self.orders else None

    @property
    def last_id(self) -> int | None:
        return self.orders[-1].id if self.orders else None

    @property
    def is_empty(self) -> bool:
        return not self.orders

    @property
    def is_end(self) -> bool:
        """A page shorter than per_page (or empty) is the end of the store."""
        return len(self.orders) < self.per_page


def parse_page(payload: object, *, store: str, page: int, per_page: int) -> Page:
    """Validate a decoded response body into a Page, or raise MalformedPage."""
    if not isinstance(payload, Mapping):
        raise MalformedPage(
            f"store {store}: page {page}: response body is {type(payload).__name__}, "
            "not a JSON object with 'data'",
            store=store,
            page=page,
        )
    data = payload.get("data")
    if not isinstance(data, list):
        raise MalformedPage(
            f"store {store}: page {page}: 'data' is {type(data).__name__}, not a list",
            store=store,
            page=page,
        )
    orders = tuple(
        Order.from_payload(item, store=store, page=page, index=i) for i, item in enumerate(data)
    )
    ids = [o.id for o in orders]
    if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
        raise MalformedPage(
            f"store {store}: page {page}: order ids are not strictly ascending",
            store=store,
            page=page,
        )
    meta = payload.get("meta")
    last_page = total = None
    if isinstance(meta, Mapping):
        lp, tt = meta.get("last_page"), meta.get("total")
        last_page = lp if isinstance(lp, int) and not isinstance(lp, bool) else None
        total = tt if isinstance(tt, int) and not isinstance(tt, bool) else None
    return Page(
        store=store, number=page, per_page=per_page, orders=orders, last_page=last_page, total=total
    )
