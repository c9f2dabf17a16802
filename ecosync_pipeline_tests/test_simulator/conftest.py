"""The simulator tests share one HTTP client, closed when the session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecosync_pipeline_tests.test_simulator.helpers import close_http


@pytest.fixture(scope="session", autouse=True)
def _shared_http_client() -> Iterator[None]:
    yield
    close_http()
