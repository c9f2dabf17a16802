"""sync_store against the simulator over HTTP and the real databases (PostgreSQL and SQLite)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from ecosync_pipeline.errors import MalformedPage, MissingToken, StorageError, StoreLocked
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import order_state, store_lock, store_summary
from ecosync_pipeline_tests.helpers import World, make_world, reconcile

SPEC = StoreSpec("SHOP", name="Shop", first_id=1000, count=430, gap_rate=0.05, seed=7)


@pytest.fixture
def specs() -> list[StoreSpec]:
    return [SPEC]


@pytest.fixture
def world(build: Callable[..., World]) -> World:
    return build()


def _assert_complete(world: World, store: str = "SHOP") -> None:
    with world.open() as rt:
        rec = reconcile(rt, world.simulator, store)
    assert (rec.missing, rec.duplicated) == (0, 0), rec


def _redis_position(rt: Runtime, store: str = "SHOP") -> SyncPosition:
    position = rt.chain.redis.read(store)
    assert isinstance(position, SyncPosition), position
    return position


def _position_not_ahead(world: World, store: str = "SHOP") -> None:
    """Invariant 2: every stored position (Redis and JSON) is at or behind the data."""
    with world.open() as rt:
        db_last = store_summary(rt.engine, store).last_order_id
        positions = [_redis_position(rt, store), rt.chain.backup.read(store)]
    for position in positions:
        assert position is not None and position.target is not None
        assert db_last is not None and position.target <= db_last, (position, db_last)


def test_first_sync_imports_every_order_and_checkpoints_the_last_page(world: World) -> None:
    with world.open() as rt:
        result = rt.sync("SHOP")
    assert result.reached_end and not result.stopped_by_budget
    assert result.orders_new == world.simulator.count("SHOP")
    assert result.from_page == 1
    assert result.to_page == world.simulator.last_page("SHOP")
    assert result.position_source == "calculated"
    _assert_complete(world)
    with world.open() as rt:
        cached = _redis_position(rt)
        backup = rt.chain.backup.read("SHOP")
    assert cached.last_order_id == world.simulator.last_id("SHOP")
    assert cached.last_page == world.simulator.last_page("SHOP")
    assert backup is not None
    assert (backup.last_page, backup.last_order_id) == (cached.last_page, cached.last_order_id)


def test_incremental_sync_fetches_only_the_new_pages(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 45)
    with world.open() as rt:
        result = rt.sync("SHOP")
    assert result.orders_new == 45
    assert result.position_source == "redis"
    # The last page is re-read (it verifies the position), then the new pages, then the end.
    assert result.api_calls <= math.ceil(45 / 20) + 2
    _assert_complete(world)


def test_sync_after_redis_flush_misses_and_duplicates_nothing(world: World, redis_url: str) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 33)
    redis.Redis.from_url(redis_url).flushdb()
    with world.open() as rt:
        result = rt.sync("SHOP")
    assert result.position_source == "json"
    assert result.orders_new == 33
    assert result.api_calls <= math.ceil(33 / 20) + 2 + 2
    _assert_complete(world)


def test_sync_with_redis_and_backup_lost_resumes_from_the_database(
    world: World, redis_url: str
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 21)
    redis.Redis.from_url(redis_url).flushdb()
    Path(world.settings.backup_path).unlink()
    with world.open() as rt:
        result = rt.sync("SHOP")
    assert result.position_source == "database"
    assert result.orders_new == 21
    assert result.from_page > 1
    _assert_complete(world)


def test_sync_runs_from_the_other_layers_when_redis_is_down(
    build: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = build(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    with world.open() as rt:
        first = rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 10)
    with world.open() as rt:
        second = rt.sync("SHOP")
    assert first.reached_end and second.orders_new == 10
    assert second.position_source == "json"
    assert any(
        "redis" in r.getMessage().lower() for r in caplog.records if r.levelname == "WARNING"
    )
    _assert_complete(world)


def test_crash_after_commit_before_position_write_neither_skips_nor_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 50)
    with world.open() as rt:
        calls = {"n": 0}
        real_save = rt.chain.save

        def crash_on_second_save(position):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt("killed between commit and checkpoint")
            return real_save(position)

        monkeypatch.setattr(rt.chain, "save", crash_on_second_save)
        with pytest.raises(KeyboardInterrupt):
            rt.sync("SHOP")
    _position_not_ahead(world)
    with world.open() as rt:
        again = rt.sync("SHOP")
    assert again.reached_end
    _assert_complete(world)
    _position_not_ahead(world)


def test_crash_before_commit_leaves_position_behind_and_next_run_completes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.add_orders("SHOP", 50)
    import ecosync_pipeline.storage.pages as engine_module

    real = engine_module.upsert_orders
    calls = {"n": 0}

    def fail_second(conn, store, orders, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise StorageError("disk full")
        return real(conn, store, orders, **kw)

    monkeypatch.setattr(engine_module, "upsert_orders", fail_second)
    with world.open() as rt, pytest.raises(StorageError):
        rt.sync("SHOP")
    monkeypatch.setattr(engine_module, "upsert_orders", real)
    _position_not_ahead(world)
    with world.open() as rt:
        rt.sync("SHOP")
    _assert_complete(world)


def test_deletions_that_shift_pages_between_runs_lose_nothing(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    world.simulator.delete_random("SHOP", 30)
    world.simulator.add_orders("SHOP", 25)
    with world.open() as rt:
        result = rt.sync("SHOP")
    assert result.orders_new == 25
    _assert_complete(world)


def test_time_budget_spreads_a_first_import_over_several_runs(world: World) -> None:
    ticks = iter(range(10_000))
    runs = []
    with world.open() as rt:
        store = rt.store("SHOP")
        from ecosync_pipeline.sync.engine import sync_store

        while True:
            with rt.client(store) as client:
                # one "second" per clock reading: the budget of 5 stops after a few pages
                result = sync_store(
                    store,
                    chain=rt.chain,
                    client=client,
                    engine=rt.engine,
                    budget_seconds=5,
                    clock=lambda: float(next(ticks)),
                )
            runs.append(result)
            if result.reached_end:
                break
            assert len(runs) < 50
    assert len(runs) >= 3
    assert all(r.stopped_by_budget for r in runs[:-1])
    # each run starts where the previous stopped (re-reading that one page)
    for before, after in zip(runs, runs[1:], strict=False):
        assert after.from_page == before.to_page
    _assert_complete(world)


def test_second_sync_of_the_same_store_exits_at_once(world: World) -> None:
    with world.open() as rt, store_lock(rt.engine, "SHOP"), pytest.raises(StoreLocked):
        rt.sync("SHOP")


def test_status_change_is_picked_up_when_its_page_is_reread(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
    last = world.simulator.last_id("SHOP")
    assert last is not None
    world.simulator.set_status("SHOP", last, "Livré")
    with world.open() as rt:
        result = rt.sync("SHOP")
        assert result.orders_updated >= 1
        assert order_state(rt.engine, "SHOP", last) == "Livré"


def test_malformed_page_fails_the_run_and_leaves_the_position(world: World) -> None:
    with world.open() as rt:
        rt.sync("SHOP")
        before = rt.chain.redis.read("SHOP")
    world.simulator.add_orders("SHOP", 60)
    world.simulator.fail_next("SHOP", 1, "malformed_id")
    with world.open() as rt:
        with pytest.raises(MalformedPage, match="SHOP.*page"):
            rt.sync("SHOP")
        assert rt.chain.redis.read("SHOP") == before
    with world.open() as rt:
        rt.sync("SHOP")
    _assert_complete(world)


def test_missing_token_fails_the_store_naming_the_variable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECOSYNC_TOKEN_SHOP", raising=False)
    with world.open() as rt, pytest.raises(MissingToken, match="ECOSYNC_TOKEN_SHOP"):
        rt.sync("SHOP")


def test_per_page_change_converts_the_position(
    simulator: Simulator, build: Callable[..., World]
) -> None:
    first = build(per_page=100)
    with first.open() as rt:
        result = rt.sync("SHOP")
    assert result.pages_fetched == math.ceil(simulator.count("SHOP") / 100)
    simulator.add_orders("SHOP", 30)
    # same data, same database: only the page size changes
    second = World(simulator, first.settings, [replace(s, per_page=20) for s in first.stores])
    with second.open() as rt:
        result = rt.sync("SHOP")
    assert result.orders_new == 30
    assert result.api_calls <= math.ceil(30 / 20) + 2 + 2 * math.ceil(math.log2(6)) + 2
    _assert_complete(second)


def test_first_import_reads_100_per_page_then_syncs_20_per_page(
    simulator: Simulator, build: Callable[..., World]
) -> None:
    world = build(per_page=20, import_per_page=100)
    count = simulator.count("SHOP")
    with world.open() as rt:
        first = rt.sync("SHOP")
    assert first.pages_fetched == math.ceil(count / 100)
    simulator.add_orders("SHOP", 30)
    with world.open() as rt:
        second = rt.sync("SHOP")
    # the converted position is at most 4 pages of 20 off: a few verification calls
    assert second.orders_new == 30
    assert second.api_calls <= math.ceil(30 / 20) + 2 + 2 * math.ceil(math.log2(5))
    with world.open() as rt:
        assert _redis_position(rt).per_page == 20
    _assert_complete(world)


@pytest.mark.parametrize("count", [300, 290])
@pytest.mark.parametrize("k", [7, 45])
def test_after_a_first_import_the_next_sync_needs_no_verification_search(
    simulator: Simulator,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    k: int,
) -> None:
    """Issue 10, item 4: the position left at 100 a page names, at 20 a page, the page that
    holds the last order, whether or not the store's size is a multiple of 100."""
    spec = StoreSpec("EXACT", name="Exact", first_id=5000, count=count, gap_rate=0.0, seed=3)
    world = make_world(
        simulator,
        [spec],
        database_url=database_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        per_page=20,
        import_per_page=100,
    )
    with world.open() as rt:
        first = rt.sync("EXACT")
    assert first.reached_end and first.orders_new == count
    with world.open() as rt:
        converted = _redis_position(rt, "EXACT")
    assert converted.per_page == 20 and converted.last_page == math.ceil(count / 20)
    simulator.add_orders("EXACT", k)
    with world.open() as rt:
        second = rt.sync("EXACT")
    assert second.orders_new == k
    # The page it resumes on (the verification, reused), the new pages, one empty page.
    assert second.verification_calls == 1
    assert second.api_calls <= math.ceil(k / 20) + 2
    _assert_complete(world, "EXACT")


def test_restoring_a_store_never_synced_does_not_invent_a_synced_order(world: World) -> None:
    from ecosync_pipeline.positions.health import status_report

    with world.open() as rt:
        reports = rt.chain.restore_all(rt.client)
        assert [r.ok for r in reports] == [True]
        after = reports[0].after
        assert after is not None and after.target is None and after.last_page == 1
        statuses = {s.store: s.status for s in status_report(rt.chain).stores}
    assert statuses["SHOP"] not in ("ahead", "missing", "reset")
    with world.open() as rt:
        assert rt.sync("SHOP").orders_new == world.simulator.count("SHOP")
    _assert_complete(world)


def test_the_token_never_reaches_redis_the_backup_or_the_logs(
    world: World, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = world.simulator.token("SHOP")
    with caplog.at_level("DEBUG"), world.open() as rt:
        rt.sync("SHOP")
    client = redis.Redis.from_url(redis_url)
    stored = b"".join((client.dump(key) or b"") + key for key in client.scan_iter(count=1000))
    assert stored and token.encode() not in stored
    backup = Path(world.settings.backup_path).read_text()
    assert "SHOP" in backup and token not in backup
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)
