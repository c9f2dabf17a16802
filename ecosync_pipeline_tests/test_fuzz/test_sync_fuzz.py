"""The sync engine meeting a malformed page in the middle of a run (DESIGN, invariant 7).

The run fails with MalformedPage naming the store and the bad page; every page before it
stays committed with the position on the last of them (never on or past the bad page);
and the next run, with the server behaving again, finishes without a gap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import MalformedPage
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.positions.model import SyncPosition
from ecosync_pipeline.storage import store_summary
from ecosync_pipeline.sync.engine import sync_store
from ecosync_pipeline_tests.faults_support import FAST_CLIENT
from ecosync_pipeline_tests.helpers import World, make_world, reconcile
from ecosync_pipeline_tests.test_fuzz.strategies import json_values

STORE = "MIDWAY"
SPEC = StoreSpec(STORE, name="Midway", first_id=7000, count=95, gap_rate=0.2, seed=21)
PER_PAGE = 20

not_a_list = json_values.filter(lambda v: not isinstance(v, list))
bad_ids = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(max_value=0),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[str, Any]:
    """How to break a page the server is about to send: (kind, detail)."""
    kind = draw(
        st.sampled_from(
            ["data_not_list", "bad_id", "missing_id", "not_ascending", "truncated", "not_json"]
        )
    )
    detail: Any = None
    if kind == "data_not_list":
        detail = draw(not_a_list)
    elif kind == "bad_id":
        detail = (draw(st.integers(min_value=0, max_value=PER_PAGE - 1)), draw(bad_ids))
    elif kind in ("missing_id", "not_ascending"):
        detail = draw(st.integers(min_value=0, max_value=PER_PAGE - 1))
    elif kind == "truncated":
        detail = draw(st.floats(min_value=0.0, max_value=0.999))
    else:
        detail = draw(st.binary(max_size=40).filter(lambda b: not _is_json(b)))
    return kind, detail


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def corrupt(body: bytes, kind: str, detail: Any) -> bytes:
    """``body`` (a valid page) broken the way ``kind`` says; always against the contract."""
    payload = json.loads(body)
    data = payload["data"]
    if kind == "data_not_list":
        payload["data"] = detail
    elif kind == "bad_id":
        index, value = detail
        data[index % len(data)]["id"] = value
    elif kind == "missing_id":
        del data[detail % len(data)]["id"]
    elif kind == "not_ascending":
        if len(data) < 2:  # nothing to reorder: repeat the only order instead
            data.append(dict(data[0]))
        i = detail % (len(data) - 1)
        data[i], data[i + 1] = data[i + 1], data[i]
    elif kind == "truncated":
        return body[: int(len(body) * detail)]
    else:
        return bytes(detail)
    return json.dumps(payload).encode()


class CorruptPage(httpx.BaseTransport):
    """Forwards to the simulator, and breaks the answer for one page number."""

    def __init__(self, page: int, kind: str, detail: Any) -> None:
        self.inner = httpx.HTTPTransport()
        self.page, self.kind, self.detail = page, kind, detail
        self.served: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        number = int(request.url.params["page"])
        self.served.append(number)
        if number != self.page:
            return response
        body = response.read()
        response.close()
        return httpx.Response(
            200,
            headers={"Content-Type": "application/json"},
            content=corrupt(body, self.kind, self.detail),
        )

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def world(
    simulator: Simulator,
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    world = make_world(
        simulator,
        [SPEC],
        database_url=postgres_url,
        redis_url=redis_url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        per_page=PER_PAGE,
    )
    with world.open() as rt:
        assert rt.sync(STORE).reached_end
    return world


def _positions(world: World) -> tuple[SyncPosition | None, SyncPosition | None]:
    with world.open() as rt:
        cached = rt.chain.redis.read(STORE)
        assert cached is None or isinstance(cached, SyncPosition)
        return cached, rt.chain.backup.read(STORE)


@settings(
    max_examples=12,
    deadline=None,
    # One world for every example: each one starts from the previous one's end state.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    new_orders=st.integers(min_value=1, max_value=70),
    offset=st.integers(min_value=0, max_value=4),
    corruption=corruptions(),
)
def test_malformed_page_mid_run_fails_naming_store_and_page_and_keeps_the_position_behind_it(
    world: World, new_orders: int, offset: int, corruption: tuple[str, Any]
) -> None:
    sim = world.simulator
    with world.open() as rt:
        synced = store_summary(rt.engine, STORE).last_order_id
    assert synced is not None
    resume = sim.page_of(STORE, synced, PER_PAGE)
    assert resume is not None
    sim.add_orders(STORE, new_orders)
    last = sim.last_page(STORE, PER_PAGE)
    bad = min(resume + offset, last)  # the resume page itself (offset 0) or one after it
    before_redis, before_json = _positions(world)
    kind, detail = corruption
    transport = CorruptPage(bad, kind, detail)
    with world.open() as rt:
        store = rt.store(STORE)
        with (
            EcoManagerClient.from_store(store, None, transport=transport, **FAST_CLIENT) as client,
            pytest.raises(MalformedPage) as caught,
        ):
            sync_store(store, chain=rt.chain, client=client, engine=rt.engine)
        db_last = store_summary(rt.engine, STORE).last_order_id
    error = caught.value
    assert (error.store, error.page) == (STORE, bad), (kind, transport.served)
    assert f"store {STORE}" in str(error) and f"page {bad}" in str(error)
    after_redis, after_json = _positions(world)
    if bad == resume:
        # Failing on the first page (verification): nothing was written at all.
        assert (after_redis, after_json) == (before_redis, before_json)
        assert db_last == synced
    else:
        # The pages before the bad one are committed and checkpointed, nothing after.
        expected_last = sim.page_ids(STORE, bad - 1, PER_PAGE)[-1]
        assert db_last == expected_last
        for position in (after_redis, after_json):
            assert position is not None
            assert (position.last_page, position.target) == (bad - 1, expected_last)
    # The server behaves again: the next run completes and nothing is missing.
    with world.open() as rt:
        rt.client_options.update(FAST_CLIENT)
        assert rt.sync(STORE).reached_end
        rec = reconcile(rt, sim, STORE)
    assert (rec.missing, rec.duplicated, rec.unexpected) == (0, 0, 0), rec
