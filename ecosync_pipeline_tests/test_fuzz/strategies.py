"""Hypothesis strategies for what a server or a disk can hand us: JSON-ish values and bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
"""Every JSON scalar, plus NaN and the infinities Python's json module writes and reads."""

json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

ids = st.one_of(
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=-5, max_value=2**64),
    st.booleans(),
    st.floats(min_value=0, max_value=1e6),
    st.text(max_size=6),
    st.none(),
)
"""Order ids: mostly plausible ones (so some pages are valid), then everything else."""

order_fields = {
    "reference": json_values,
    "order_state_name": json_values,
    "confirmation_state_name": json_values,
    "full_name": json_values,
    "telephone": json_values,
    "wilaya": json_values,
    "commune": json_values,
    "items": json_values | st.lists(st.dictionaries(st.text(max_size=8), json_values), max_size=3),
    "total_products": json_values,
    "total": json_values,
    "created_at": json_values | st.just("2024-05-17T10:23:45.000000Z"),
    "updated_at": json_values | st.just("2024-13-45T99:99:99Z"),
}

orders = st.fixed_dictionaries({"id": ids}, optional=order_fields)


@st.composite
def ascending_orders(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A well-formed list of orders (ascending positive ids) with arbitrary other fields."""
    chosen = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**12), max_size=25)))
    fields = draw(
        st.lists(
            st.fixed_dictionaries({}, optional=order_fields),
            min_size=len(chosen),
            max_size=len(chosen),
        )
    )
    return [{**extra, "id": order_id} for order_id, extra in zip(chosen, fields, strict=False)]


data_values = st.one_of(
    ascending_orders(),
    st.lists(orders | json_values, max_size=25),
    json_values,
)

meta = st.dictionaries(
    st.sampled_from(["current_page", "last_page", "per_page", "total", "from", "to", "path"]),
    json_values,
)

payloads = st.one_of(
    st.fixed_dictionaries({"data": data_values}, optional={"meta": meta, "links": json_values}),
    json_values,
)
"""Response bodies as decoded JSON: mostly contract-shaped, often subtly wrong."""


def dumps(value: Any) -> bytes:
    """JSON as a server would send it (NaN and Infinity literals included)."""
    return json.dumps(value).encode("utf-8")


@st.composite
def damaged(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    """Bytes from ``source`` cut short, overwritten in places, or with garbage appended."""
    raw = draw(source)
    how = draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate" or not raw:
        return raw[: draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))]
    if how == "flip":
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at + 1 :]
    return raw + draw(st.binary(min_size=1, max_size=16))


def bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bytes on the wire or on disk: valid JSON of ``documents``, damaged JSON, or noise."""
    encoded = documents.map(dumps)
    return st.one_of(
        encoded,
        damaged(encoded),
        st.binary(max_size=200),
        st.text(max_size=60).map(lambda t: t.encode("utf-8")),
        encoded.map(lambda b: b.decode("utf-8").encode("utf-16")),
    )
