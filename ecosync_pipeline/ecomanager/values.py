"""What the orders table can hold, checked field by field before an order reaches it.

The contract makes every field but ``id`` optional, and a server may put anything in
them: a NUL character (PostgreSQL text refuses it), a lone surrogate (not encodable as
UTF-8, so neither database takes it), ``NaN``, an amount beyond NUMERIC(14, 2), a date
that overflows when converted to UTC. Each parser here returns a value both databases
store, or raises ``Unstorable`` with the reason; the order model then sets that one
field aside instead of failing the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

MAX_ORDER_ID = 2**63 - 1
"""The orders table keeps order ids as BIGINT."""

MAX_AMOUNT = Decimal("999999999999.99")
"""The orders table keeps amounts as NUMERIC(14, 2) (storage.dialect.MONEY_MAX)."""

MAX_JSON_DEPTH = 32
"""Nesting kept in ``items``; deeper structures are set aside (no real order has them)."""

_CENT = Decimal("0.01")


class Unstorable(ValueError):
    """A value the orders table cannot hold; ``reason`` says why, without echoing it whole."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def check_text(value: str) -> str:
    """``value`` if both databases can store it as text, else raise Unstorable."""
    if "\x00" in value:
        raise Unstorable("it holds a NUL character, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Unstorable(
            f"it holds a lone surrogate (U+{ord(value[exc.start]):04X}), which is not UTF-8"
        ) from None
    return value


def text(value: object) -> str:
    """A text field: strings as they are, numbers and booleans as JSON writes them."""
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, (bool, int)):
        return json.dumps(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable(f"it is {value!r}, not text")
        return json.dumps(value)
    raise Unstorable(f"it is a JSON {_kind(value)}, not text")


def amount(value: object) -> Decimal:
    """An amount: a number or numeric string that fits NUMERIC(14, 2) once rounded to cents."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Unstorable(f"it is a JSON {_kind(value)}, not a number")
    try:
        number = Decimal(value if isinstance(value, (int, str)) else repr(value))
    except (InvalidOperation, ValueError):
        raise Unstorable("it is not a number") from None
    if not number.is_finite():
        raise Unstorable(f"it is {number}, not a finite number")
    try:
        rounded = number.quantize(_CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise Unstorable("it is far beyond NUMERIC(14, 2)") from None
    if abs(rounded) > MAX_AMOUNT:
        raise Unstorable(f"it is beyond NUMERIC(14, 2) (at most {MAX_AMOUNT})")
    return rounded


def timestamp(value: object) -> datetime:
    """An ISO-8601 date and time, converted to UTC (a naive one is taken as UTC already)."""
    if not isinstance(value, str):
        raise Unstorable(f"it is a JSON {_kind(value)}, not an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unstorable("it is not an ISO-8601 date and time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise Unstorable("it falls outside the years 1 to 9999 once converted to UTC") from None


def items(value: object) -> tuple[Mapping[str, Any], ...]:
    """The order's items: a list of JSON objects that PostgreSQL's jsonb can hold."""
    if not isinstance(value, list):
        raise Unstorable(f"it is a JSON {_kind(value)}, not a list of items")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise Unstorable(f"items[{index}] is a JSON {_kind(item)}, not an object")
        try:
            check_json(item, 1)
        except Unstorable as exc:
            raise Unstorable(f"items[{index}]: {exc.reason}") from None
    return tuple(value)


def check_json(value: object, depth: int) -> None:
    """Raise Unstorable if ``value`` has anything jsonb refuses, or nests past MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise Unstorable(f"it nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise Unstorable(f"it holds {value!r}, which JSON cannot carry")
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            check_text(str(key))
            check_json(inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            check_json(inner, depth + 1)


def raw_json(payload: Mapping[str, Any]) -> str | None:
    """The order as served, as ASCII JSON (NUL, surrogates and NaN escaped), or None.

    ASCII with every odd character escaped is text both databases store, so the value
    set aside is kept exactly as the server sent it.
    """
    try:
        return json.dumps(payload, ensure_ascii=True, allow_nan=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__
