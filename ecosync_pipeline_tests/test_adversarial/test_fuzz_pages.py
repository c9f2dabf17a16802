"""Whole pages with arbitrary JSON in every optional field, synced end to end (hypothesis).

Whatever the optional fields hold (NUL, lone surrogates, NaN, huge or odd numbers,
impossible dates, nested objects) and however many ids lie beyond BIGINT, the sync never
raises: every order the table can hold is stored, each odd field is set aside by name,
the store is not blocked (the next run succeeds too), and the position never names an
order the database does not have.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import store_summary
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import make_token
from ecosync_pipeline_tests.test_fuzz.strategies import json_values, order_fields

TOKEN = make_token()
TOKEN_ENV = "ECOSYNC_TOKEN_FUZZED"
counter = itertools.count()

odd_scalars = st.one_of(
    st.sampled_from(
        [
            "\x00",
            "Ali\x00ce",
            "caf\ud800",
            "\udfff",
            "NaN",
            "-Infinity",
            "1e400",
            "1e15",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2024-02-30T10:00:00Z",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.text(st.characters(codec=None, exclude_categories=[]), max_size=8),
)
odd_values = st.one_of(
    json_values,
    odd_scalars,
    st.lists(st.dictionaries(odd_scalars.map(str), odd_scalars | json_values), max_size=3),
)
fields = st.fixed_dictionaries(
    {}, optional={name: odd_values | strategy for name, strategy in order_fields.items()}
)


@st.composite
def stores(draw: st.DrawFn) -> tuple[list[int], dict[int, dict[str, Any]]]:
    """Ascending ids (a few past BIGINT at the end) and each order's odd fields."""
    ids = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=45)))
    ids += [2**63 + k for k in range(draw(st.integers(min_value=0, max_value=2)))]
    odd = {i: draw(fields) for i in ids}
    return ids, odd


@pytest.fixture
def fuzz_settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        stores_file=str(tmp_path / "unused.yaml"),
        backup_path=str(tmp_path / "backup.json"),
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(store=stores())
def test_pages_of_arbitrary_optional_fields_never_crash_block_or_move_past_the_data(
    store: tuple[list[int], dict[int, dict[str, Any]]],
    adversarial: AdversarialServer,
    fuzz_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids, odd = store
    sid = f"FZ{next(counter)}"
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    adversarial.serve(AdversarialStore(sid, TOKEN, ids, odd=odd))
    config = Store(sid, sid, adversarial.store_url(sid), TOKEN_ENV, 20, 1e6, 20)
    storable = [i for i in ids if i < 2**63]
    with Runtime.from_settings(fuzz_settings, stores=[config]) as runtime:
        for _ in range(2):  # the next run is not blocked either
            result = runtime.sync(sid)
            assert result.reached_end
            # Every refusal and set-aside field is named with the store and its page.
            assert all(line.startswith(f"store {sid}: page ") for line in result.set_aside)
            refused = [line for line in result.set_aside if ": refused, its id" in line]
            assert len(refused) == len(ids) - len(storable)
            summary = store_summary(runtime.engine, sid)
            assert summary.order_count == len(storable)
            assert summary.last_order_id == max(storable, default=None)
            position = runtime.chain.redis.read(sid)
            assert isinstance(position, SyncPosition)
            assert (position.last_order_id or 0) <= (summary.last_order_id or 0)
