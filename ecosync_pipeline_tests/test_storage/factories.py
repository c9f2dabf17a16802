"""Orders and pages for the storage tests."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from ecosync_pipeline.ecomanager.models import Order

T0 = datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)


def make_order(order_id: int, state: str = "En cours", **fields: object) -> Order:
    """An order with every column filled, so round trips check every type."""
    values: dict[str, object] = {
        "reference": f"NATUR{order_id}",
        "order_state_name": state,
        "confirmation_state_name": "Confirmé",
        "full_name": "Amina Benali",
        "telephone": "0550123456",
        "wilaya": "Alger",
        "commune": "Bab Ezzouar",
        "items": (
            {
                "product_id": 7,
                "sku": "SKU-7",
                "title": "Savon",
                "quantity": 2,
                "selling_price": 1250,
            },
        ),
        "total_products": Decimal("2500.00"),
        "total": Decimal("2900.50"),
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Order(id=order_id, **values)  # type: ignore[arg-type]


def make_page(
    first_id: int, count: int = 20, step: int = 1, state: str = "En cours"
) -> list[Order]:
    """``count`` orders with ascending ids from ``first_id`` (gaps of ``step``)."""
    return [make_order(first_id + i * step, state) for i in range(count)]
