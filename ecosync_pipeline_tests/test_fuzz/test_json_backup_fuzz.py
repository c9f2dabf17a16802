"""JsonBackup against arbitrary bytes in the backup file: a position from valid content, or none.

Whatever the file holds, reading never raises; an untrustworthy file is moved aside
intact (quarantined) and reads as empty; and a position that is returned is exactly the
one its entry says, so a damaged file can never hand the sync a wrong page.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.errors import BackupCorrupt
from ecosync_pipeline.positions.codec import position_fields
from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline_tests.test_fuzz.strategies import bodies, json_values

STORES = ("NATUR", "PURNA", "DILST")

ids = st.none() | st.integers(min_value=-2, max_value=2**63) | json_values
entries = st.fixed_dictionaries(
    {},
    optional={
        "storeIdentifier": st.sampled_from(STORES) | json_values,
        "storeName": json_values,
        "lastPage": st.integers(min_value=-2, max_value=10**6) | json_values,
        "firstId": ids,
        "lastId": ids,
        "lastOrderId": ids,
        "perPage": st.integers(min_value=-1, max_value=150) | json_values,
        "timestamp": st.just("2025-03-01T10:00:00.000Z") | json_values,
        "source": st.sampled_from(["redis", "json", "database"]) | json_values,
        "verified": st.booleans() | json_values,
    },
)
store_keys = st.sampled_from(STORES) | st.sampled_from(["", "bad key", "../etc", "A" * 40])

positions = st.builds(
    SyncPosition,
    store=st.sampled_from(STORES),
    store_name=st.text(max_size=12),
    last_page=st.integers(min_value=1, max_value=10**6),
    first_id=st.none() | st.integers(min_value=1, max_value=10**9),
    last_id=st.none() | st.integers(min_value=1, max_value=10**9),
    last_order_id=st.none() | st.integers(min_value=1, max_value=10**9),
    updated_at=st.datetimes(timezones=st.just(timezone.utc)),
    source=st.sampled_from(["redis", "json", "database", "calculated"]),
    per_page=st.integers(min_value=1, max_value=100),
    verified=st.booleans(),
)


def _as_written(position: SyncPosition) -> dict[str, Any]:
    return {position.store: {"storeIdentifier": position.store, **position_fields(position)}}


documents = st.one_of(
    # What JsonBackup itself writes.
    st.lists(positions, max_size=3).map(
        lambda ps: {
            "version": "1.0.0",
            "timestamp": "2025-03-01T10:00:00.000Z",
            "stores": {k: v for p in ps for k, v in _as_written(p).items()},
        }
    ),
    # The right shape with arbitrary entries.
    st.fixed_dictionaries(
        {
            "version": st.just("1.0.0") | json_values,
            "stores": st.dictionaries(store_keys, entries | json_values, max_size=4),
        },
        optional={"timestamp": json_values},
    ),
    json_values,
)


def _trusted(content: bytes) -> dict[str, Any] | None:
    """Our own verdict on the content: the document when it is a readable backup."""
    try:
        document = json.loads(content.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("version") != "1.0.0":
        return None
    return document if isinstance(document.get("stores"), dict) else None


def _plain_int(value: object) -> bool:
    return type(value) is int


def _check_position(position: SyncPosition, key: str, entry: Any) -> None:
    """A returned position is what its entry says, and nothing the entry does not say."""
    assert isinstance(entry, dict)
    assert position.store == key and position.source == "json"
    assert entry.get("storeIdentifier", key) == key
    # ecosyncPage (ours, at perPage) when present; else lastPage (the original's, at 20).
    page_key = "ecosyncPage" if "ecosyncPage" in entry else "lastPage"
    assert _plain_int(entry[page_key]) and position.last_page == entry[page_key] >= 0
    assert position.first_id == entry.get("firstId")
    assert position.last_id == entry.get("lastId")
    expected_last = entry["lastOrderId"] if "lastOrderId" in entry else entry.get("lastId")
    assert position.last_order_id == expected_last
    for value in (position.first_id, position.last_id, position.last_order_id):
        assert value is None or (_plain_int(value) and value >= 0)
    assert position.per_page == entry.get("perPage", 20)
    assert 1 <= position.per_page <= 100
    assert position.verified is (entry.get("verified") is True)


def _read_and_check(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sync-positions.json"
        path.write_bytes(content)
        backup = JsonBackup(path)
        read = backup.read_all()  # must not raise, whatever the bytes
        document = _trusted(content)
        moved = sorted(Path(folder).glob("sync-positions.json.corrupt-*"))
        if document is None:
            assert read == {}
            assert not path.exists(), "an untrustworthy file was left in place"
            assert len(moved) == 1 and moved[0].read_bytes() == content, "not moved aside intact"
            assert isinstance(backup.last_quarantined, BackupCorrupt)
        else:
            assert path.read_bytes() == content and not moved
            assert set(read) <= set(document["stores"])
            for key, position in read.items():
                _check_position(position, key, document["stores"][key])
        for store in STORES:
            assert backup.read(store) == read.get(store)
        # And the layer carries on: the next write recreates a readable file.
        fresh = SyncPosition.first_sync("NATUR", "Natur")
        # The file keeps milliseconds.
        fresh = replace(fresh, updated_at=fresh.updated_at.replace(microsecond=0))
        backup.write(fresh)
        assert backup.read("NATUR") == fresh.with_source("json")


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(content=bodies(documents))
@example(content=b"")
@example(content=b'{"version": "1.0.0", "stores": {"NATUR": {"lastPage": 3, "lastId": 9')
@example(content=b'{"version": "1.0.0", "stores": {"NATUR": {"lastPage": true}}}')
@example(content=b'{"version": "2.0.0", "stores": {}}')
@example(content=b'{"version": "1.0.0", "stores": {"NATUR": {"lastPage": 3, "perPage": 1e2}}}')
def test_backup_read_gives_a_position_from_valid_content_or_none_with_the_file_moved_aside(
    content: bytes,
) -> None:
    _read_and_check(content)


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": "1.0.0", "stores": ' + b"[" * 2_000,
        b"[" * 100_000,
        b'{"version": "1.0.0", "stores": {"NATUR": {"lastPage": ' + b"7" * 5_000 + b"}}}",
        b'{"version": [], "stores": {}}',
        b'{"version": {"major": 1}, "stores": {}}',
    ],
    ids=["nested-2000", "nested-100000", "5000-digit-number", "version-list", "version-object"],
)
def test_backup_that_broke_the_parser_is_quarantined_not_raised(
    content: bytes,
) -> None:
    """json.loads raises RecursionError, or a plain ValueError (not a JSONDecodeError), on
    nesting past the recursion limit and on integers of more than 4,300 digits; an
    unhashable version made the version check raise TypeError."""
    _read_and_check(content)
