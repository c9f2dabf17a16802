"""Layer 2: the JSON backup file, its format, its atomic locked writes and its quarantine."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from upath import UPath

from ecosync_pipeline.positions.json_layer import JsonBackup
from ecosync_pipeline.positions.model import SyncPosition, utc_now

ORIGINAL = {
    "version": "1.0.0",
    "timestamp": "2025-03-01T10:00:00.000Z",
    "stores": {
        "NATUR": {
            "storeIdentifier": "NATUR",
            "storeName": "Natural DZ",
            "lastPage": 9081,
            "lastOrderId": 181601,
            "firstId": 181590,
            "lastId": 181601,
            "timestamp": "2025-03-01T10:00:00.000Z",
            "source": "redis",
        },
        "PURNA": {
            "storeIdentifier": "PURNA",
            "storeName": "Purna",
            "lastPage": 9504,
            "lastOrderId": 9509,
            "firstId": 9490,
            "lastId": 9509,
            "timestamp": "2025-03-01T10:00:00.000Z",
            "source": "redis",
        },
    },
}


def _position(store: str, page: int = 3, last: int = 60) -> SyncPosition:
    return SyncPosition(
        store=store,
        store_name=f"{store} shop",
        last_page=page,
        first_id=last - 19,
        last_id=last,
        last_order_id=last,
        updated_at=utc_now(),
        source="redis",
        per_page=20,
        verified=True,
    )


@pytest.fixture(params=["path", "file-url", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same file as a local path, a file:// URL and a memory:// URL."""
    if request.param == "path":
        yield str(tmp_path / "backup" / "sync-positions.json")
    elif request.param == "file-url":
        yield (tmp_path / "backup" / "sync-positions.json").as_uri()
    else:
        root = f"memory://ecosync-{uuid.uuid4().hex}"
        yield f"{root}/backup/sync-positions.json"
        if UPath(root).exists():
            UPath(root).fs.rm(UPath(root).path, recursive=True)


def _siblings(location: str) -> list[str]:
    path = UPath(location)
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_json_backup_absent_file_reads_as_empty(location: str) -> None:
    assert JsonBackup(location).read_all() == {}


def test_json_backup_round_trips_in_original_format(location: str) -> None:
    backup = JsonBackup(location)
    backup.write(_position("NATUR", 9081, 181_601))
    document = json.loads(UPath(location).read_text())
    assert document["version"] == "1.0.0"
    entry = document["stores"]["NATUR"]
    assert entry["storeIdentifier"] == "NATUR"
    assert (entry["lastPage"], entry["lastOrderId"], entry["lastId"]) == (9081, 181_601, 181_601)
    assert entry["perPage"] == 20
    read = backup.read("NATUR")
    assert read is not None and read.source == "json" and read.last_page == 9081


def test_json_backup_reads_file_written_by_original_system(location: str) -> None:
    path = UPath(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ORIGINAL))
    positions = JsonBackup(location).read_all()
    assert set(positions) == {"NATUR", "PURNA"}
    assert positions["PURNA"].last_page == 9504
    assert positions["PURNA"].last_order_id == 9509
    assert positions["NATUR"].store_name == "Natural DZ"


def test_json_backup_update_keeps_other_stores(location: str) -> None:
    path = UPath(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ORIGINAL))
    backup = JsonBackup(location)
    backup.write(_position("DILST", 5000, 100_000))
    backup.write(_position("NATUR", 9082, 181_621))
    positions = backup.read_all()
    assert set(positions) == {"NATUR", "PURNA", "DILST"}
    assert positions["NATUR"].last_page == 9082
    assert positions["PURNA"].last_page == 9504


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (json.dumps(ORIGINAL).encode()[:57], "JSON"),  # truncated mid-write
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b"<html>not json</html>", "JSON"),
        (json.dumps({**ORIGINAL, "version": "9.9.9"}).encode(), "version"),
        (b"[1, 2, 3]", "list"),
    ],
    ids=["empty", "truncated", "binary", "not-json", "unknown-version", "not-object"],
)
def test_json_backup_quarantines_untrustworthy_file(
    location: str, content: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = UPath(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    backup = JsonBackup(location)
    with caplog.at_level(logging.WARNING):
        assert backup.read_all() == {}
        assert backup.read_all() == {}  # reported once: the file is gone now
    assert backup.last_quarantined is not None
    assert reason in backup.last_quarantined.reason
    moved = UPath(backup.last_quarantined.moved_to or "")
    assert moved.read_bytes() == content  # moved aside, never deleted
    assert not path.exists()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    backup.write(_position("NATUR"))  # the next write starts a fresh file
    assert set(backup.read_all()) == {"NATUR"}
    assert any(".corrupt-" in name for name in _siblings(location))


def test_json_backup_ignores_entries_with_invalid_identifiers(
    location: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = UPath(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = dict(ORIGINAL["stores"]["NATUR"], storeIdentifier="../../etc")  # type: ignore[arg-type]
    stores = {**ORIGINAL["stores"], "../../etc": bad, "OK1": {"lastPage": "x"}}  # type: ignore[dict-item]
    path.write_text(json.dumps({**ORIGINAL, "stores": stores}))
    backup = JsonBackup(location)
    with caplog.at_level(logging.WARNING):
        positions = backup.read_all()
    assert set(positions) == {"NATUR", "PURNA"}
    assert "ignored" in caplog.text
    backup.write(_position("DILST"))
    written = json.loads(path.read_text())["stores"]
    assert "../../etc" not in written
    assert {"NATUR", "PURNA", "DILST", "OK1"} <= set(written)


def test_json_backup_local_file_is_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    location = tmp_path / "positions.json"
    backup = JsonBackup(location)
    for page in range(1, 6):
        backup.write(_position("NATUR", page, page * 20))
    assert stat.S_IMODE(os.stat(location).st_mode) == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _write_in_threads(stores: list[str], pages: int, backup: Callable[[], JsonBackup]) -> None:
    """A thread a store, each writing its pages 1..``pages`` through ``backup()``."""

    def work(store: str) -> None:
        own = backup()
        for page in range(1, pages + 1):
            own.write(_position(store, page, page * 20))

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_json_backup_concurrent_threads_lose_no_store(location: str) -> None:
    stores = [f"S{i}" for i in range(12)]
    # An instance each, as separate runs would have.
    _write_in_threads(stores, 5, lambda: JsonBackup(location))
    positions = JsonBackup(location).read_all()
    assert set(positions) == set(stores)
    assert all(p.last_page == 5 for p in positions.values())


def _write_from_process(location: str, store: str) -> None:
    backup = JsonBackup(location)
    for page in range(1, 11):
        backup.write(_position(store, page, page * 20))


def test_json_backup_concurrent_processes_lose_no_store(tmp_path: Path) -> None:
    location = str(tmp_path / "positions.json")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_from_process, args=(location, f"P{i}")) for i in range(4)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    positions = JsonBackup(location).read_all()
    assert set(positions) == {"P0", "P1", "P2", "P3"}
    assert all(p.last_page == 10 for p in positions.values())


def _stores_in_file(location: str) -> dict[str, int]:
    document = json.loads(UPath(location).read_text())
    return {k: v["lastPage"] for k, v in document["stores"].items()}


def test_json_backup_coalescing_gathers_writes_and_lands_them_on_exit(location: str) -> None:
    backup = JsonBackup(location)
    stores = [f"S{i}" for i in range(8)]
    with backup.coalescing(seconds=3600):
        backup.write(_position("FIRST", 1, 20))  # the first write of the block lands at once
        assert _stores_in_file(location) == {"FIRST": 1}
        _write_in_threads(stores, 3, lambda: backup)  # one instance, as in a batch run
        # Waiting for the next write of the file, yet read back by this process already.
        assert _stores_in_file(location) == {"FIRST": 1}
        waiting = backup.read_all()
        assert {s: waiting[s].last_page for s in stores} == dict.fromkeys(stores, 3)
        assert waiting["S0"].source == "json"
    # Leaving the block writes every entry still waiting, each at its last page.
    assert _stores_in_file(location) == {"FIRST": 1, **dict.fromkeys(stores, 3)}
    assert set(JsonBackup(location).read_all()) == {"FIRST", *stores}


def test_json_backup_coalescing_writes_again_once_the_interval_has_passed(
    tmp_path: Path,
) -> None:
    location = str(tmp_path / "sync-positions.json")
    backup = JsonBackup(location)
    with backup.coalescing(seconds=1.5):
        backup.write(_position("A", 1, 20))
        backup.write(_position("B", 1, 20))
        assert "B" not in _stores_in_file(location)
        threading.Event().wait(1.6)
        backup.write(_position("C", 1, 20))  # due: B and C land together
        assert set(_stores_in_file(location)) == {"A", "B", "C"}
    # A later block's first write lands at once again, whatever the last block did.
    with backup.coalescing(seconds=3600):
        backup.write(_position("D", 1, 20))
        assert "D" in _stores_in_file(location)


def test_json_backup_coalescing_keeps_entries_a_failed_write_could_not_land(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup's folder should be")
    location = str(blocker / "sync-positions.json")
    backup = JsonBackup(location)
    with backup.coalescing(seconds=3600):
        assert not backup.write(_position("A", 1, 20))  # the first write lands at once: fails
        blocker.unlink()
        backup.write(_position("B", 2, 40))
    assert _stores_in_file(location) == {"A": 1, "B": 2}
