"""The typed order and page that the client hands to the rest of ecosync.

Only ``id`` is certain in the contract; every other field is optional and parsed
leniently, so a server that omits or reshapes a field never stops the sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from ecosync_pipeline.ecomanager import values
from ecosync_pipeline.errors import MalformedPage

T = TypeVar("T")


@dataclass(frozen=True)
class SetAside:
    """One field of one order that the orders table cannot hold (or an order refused whole).

    ``field`` is ``"id"`` for an order refused because its id does not fit the table.
    """

    store: str
    page: int
    order_id: int
    field: str
    reason: str

    @property
    def refused(self) -> bool:
        return self.field == "id"

    def __str__(self) -> str:
        where = f"store {self.store}: page {self.page}: order {self.order_id}"
        if self.refused:
            return (
                f"{where}: refused, its id {self.reason}; the store's other orders are "
                "stored. Ask EcoManager about this order"
            )
        return (
            f"{where}: field {self.field!r} set aside ({self.reason}); the order is stored "
            "without it and its raw JSON is kept in raw_payload"
        )


def _short(value: object, limit: int = 60) -> str:
    """A repr for messages, cut short: a server may send megabytes in one field."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Order:
    """One EcoManager order, with the fields the orders table keeps.

    ``set_aside`` lists the fields the table could not hold (stored empty); ``raw`` is
    then the order as served (ASCII JSON), so nothing is lost.
    """

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
    set_aside: tuple[SetAside, ...] = field(default=(), compare=False)
    raw: str | None = field(default=None, compare=False, repr=False)
    fetched_at: datetime | None = field(default=None, compare=False, repr=False)
    """When ecosync asked for this state (the page's request, the delivery's arrival): the
    merge rule never lets a state fetched before a deletion was recorded revive it."""

    @classmethod
    def from_payload(
        cls,
        data: object,
        *,
        store: str,
        page: int,
        index: int,
        fetched_at: datetime | None = None,
    ) -> Order:
        """Parse one element of ``data``; raise MalformedPage naming store, page and field.

        Only a missing or non-integer ``id`` fails the page (the contract's one certainty);
        any other field the table cannot hold is set aside (see ``SetAside``).
        """
        raw_id = order_id(data, store=store, page=page, index=index)
        assert isinstance(data, Mapping)
        aside: list[SetAside] = []

        def take(name: str, parse: Callable[[object], T]) -> T | None:
            value = data.get(name)
            if value is None:
                return None
            try:
                return parse(value)
            except values.Unstorable as exc:
                reason = exc.reason
            # Whatever else a parser trips on is still this one field's problem.
            except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
                reason = f"{type(exc).__name__} while reading it"
            aside.append(SetAside(store, page, raw_id, name, reason))
            return None

        # Keyword arguments are evaluated in order: ``aside`` is complete by the last two.
        return cls(
            id=raw_id,
            reference=take("reference", values.text),
            order_state_name=take("order_state_name", values.text),
            confirmation_state_name=take("confirmation_state_name", values.text),
            full_name=take("full_name", values.text),
            telephone=take("telephone", values.text),
            wilaya=take("wilaya", values.text),
            commune=take("commune", values.text),
            items=take("items", values.items) or (),
            total_products=take("total_products", values.amount),
            total=take("total", values.amount),
            created_at=take("created_at", values.timestamp),
            updated_at=take("updated_at", values.timestamp),
            set_aside=tuple(aside),
            raw=values.raw_json(data) if aside else None,
            fetched_at=fetched_at,
        )


def order_id(data: object, *, store: str, page: int, index: int) -> int:
    """The integer id of ``data[index]``, or MalformedPage naming store, page and index."""
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
            f"store {store}: page {page}: data[{index}] field 'id' is {_short(raw_id)}, "
            "not a positive integer",
            store=store,
            page=page,
        )
    return raw_id


@dataclass(frozen=True)
class Page:
    """One page of orders as served, in ascending id order.

    ``last_page``, ``total`` and ``meta_per_page`` come from ``meta`` when the server
    sends it; they are hints only. ``served`` counts every element of ``data``, the
    orders refused for an id the table cannot hold (``refused``) included.
    """

    store: str
    number: int
    per_page: int
    orders: tuple[Order, ...]
    last_page: int | None = None
    total: int | None = None
    served: int | None = None
    refused: tuple[SetAside, ...] = ()
    meta_per_page: int | None = None
    next_cursor: str | None = None
    """A newest-first cursor read's ``meta.next_cursor``: None on its last page."""

    @property
    def count_served(self) -> int:
        """Elements of ``data`` as served (orders plus refused ones)."""
        return len(self.orders) if self.served is None else self.served

    @property
    def set_aside(self) -> tuple[SetAside, ...]:
        """Every field set aside and every order refused on this page."""
        return self.refused + tuple(a for o in self.orders for a in o.set_aside)

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
        return self.count_served < self.per_page


def parse_page(
    payload: object,
    *,
    store: str,
    page: int,
    per_page: int,
    fetched_at: datetime | None = None,
) -> Page:
    """Validate a decoded response body into a Page, or raise MalformedPage.

    ``fetched_at`` (when the request was sent) is stamped on every order.
    """
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
    orders: list[Order] = []
    refused: list[SetAside] = []
    ids: list[int] = []
    for index, item in enumerate(data):
        oid = order_id(item, store=store, page=page, index=index)
        ids.append(oid)
        if oid > values.MAX_ORDER_ID:
            reason = f"{oid} does not fit the orders table (BIGINT, at most 2^63-1)"
            refused.append(SetAside(store, page, oid, "id", reason))
            continue
        orders.append(
            Order.from_payload(item, store=store, page=page, index=index, fetched_at=fetched_at)
        )
    if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
        raise MalformedPage(
            f"store {store}: page {page}: order ids are not strictly ascending",
            store=store,
            page=page,
        )
    hints = _meta_ints(payload.get("meta"), ("last_page", "total", "per_page"))
    return Page(
        store=store,
        number=page,
        per_page=per_page,
        orders=tuple(orders),
        last_page=hints["last_page"],
        total=hints["total"],
        served=len(data),
        refused=tuple(refused),
        meta_per_page=hints["per_page"],
    )


def parse_order(
    payload: object, *, store: str, order_id: int, fetched_at: datetime | None = None
) -> Order:
    """The single-order answer (``{"data": order}``, or the bare order) for ``order_id``.

    MalformedPage when it is not an order, or is another order than the one asked for.
    """
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    where = f"store {store}: order {order_id}"
    served = payload.get("id") if isinstance(payload, Mapping) else None
    if isinstance(served, bool) or served != order_id:
        raise MalformedPage(
            f"{where}: the answer is not this order (its id is {_short(served)})",
            store=store,
            order_id=order_id,
        )
    return Order.from_payload(payload, store=store, page=0, index=0, fetched_at=fetched_at)


def _meta_ints(meta: object, keys: Sequence[str]) -> dict[str, int | None]:
    """The integer values of ``keys`` in ``meta`` (None where absent or not an integer)."""
    found: dict[str, int | None] = dict.fromkeys(keys)
    if isinstance(meta, Mapping):
        for key in keys:
            value = meta.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                found[key] = value
    return found


def parse_newest_page(
    payload: object,
    *,
    store: str,
    number: int,
    per_page: int,
    fetched_at: datetime | None = None,
) -> Page:
    """A newest-first cursor page (``sort_direction=desc``) as a Page in ascending order.

    ``number`` counts the pages of this read (1 is the newest). The ids must be strictly
    descending as served; a server that ignored ``sort_direction`` (ascending ids) is
    refused, naming the store's ``read_mode``. ``next_cursor`` comes from
    ``meta.next_cursor``, else from the ``cursor`` parameter of ``links.next``.
    """
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if isinstance(data, list):
        ids = [item.get("id") if isinstance(item, Mapping) else None for item in data]
        known = [i for i in ids if isinstance(i, int)]
        if any(b >= a for a, b in zip(known, known[1:], strict=False)):
            raise MalformedPage(
                f"store {store}: newest-first page {number}: order ids are not strictly "
                "descending, so the server ignores sort_direction=desc; set read_mode: pages "
                "for this store in the stores file",
                store=store,
                page=number,
            )
        payload = {**payload, "data": list(reversed(data))}  # type: ignore[dict-item]
    page = parse_page(payload, store=store, page=number, per_page=per_page, fetched_at=fetched_at)
    return replace(page, next_cursor=_next_cursor(payload))


def _next_cursor(payload: object) -> str | None:
    if not isinstance(payload, Mapping):
        return None
    meta = payload.get("meta")
    if isinstance(meta, Mapping) and "next_cursor" in meta:
        value = meta.get("next_cursor")
        return value if isinstance(value, str) and value else None
    links = payload.get("links")
    link = links.get("next") if isinstance(links, Mapping) else None
    if isinstance(link, str):
        found = parse_qs(urlsplit(link).query).get("cursor")
        return found[0] if found else None
    return None
