"""A worker of ``ecosync bench ratelimit``.

Run as ``python -m ecosync_pipeline.lab.bench.ratelimit_worker``.

Reads its job as JSON on stdin (role, store, URLs, budget, how many calls in all),
calls the simulated store the way its role does, each call under the store's shared
budget, until the benchmark's shared counter in Redis reaches the total, then writes when the
budget let each of its requests through (and their outcomes) as JSON on stdout.

Roles, the mixed traffic of one store:

- ``sync``: ascending pages at 100 a page, from page 1 to the end, then again;
- ``reconcile``: newest first with the keyset cursor at 100 a page, to the end, then again;
- ``checks``: the health check (``per_page=1&page=1``), as the asset checks make it;
- ``recovery``: single pages of 20 around a position, as a verification gallops.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ApiError, ApiUnavailable
from ecosync_pipeline.ratebudget import RateBudget

ROLES = ("sync", "reconcile", "checks", "recovery")


def _caller(role: str, client: EcoManagerClient, pages: int, seed: int) -> Callable[[], None]:
    """A function making one call of ``role``'s kind each time it is called."""
    rng = random.Random(seed)
    state: dict[str, Any] = {"page": 1, "cursor": None}

    def sync() -> None:
        page = client.fetch_page(state["page"], 100)
        state["page"] = 1 if page.is_end or page.is_empty else state["page"] + 1

    def reconcile() -> None:
        page = client.fetch_newest(state["cursor"])
        state["cursor"] = page.next_cursor

    def checks() -> None:
        client.fetch_page(1, 1)

    def recovery() -> None:
        client.fetch_page(rng.randrange(1, pages * 5 + 1), 20)

    return {"sync": sync, "reconcile": reconcile, "checks": checks, "recovery": recovery}[role]


class _Stamped:
    """The store's budget, noting when it let each request through (retries included)."""

    def __init__(self, inner: SharedBudget) -> None:
        self.inner = inner
        self.granted: list[float] = []

    def acquire(self) -> float:
        waited = self.inner.acquire()
        self.granted.append(time.time())
        return waited


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Call until the shared counter passes the total; the finish time of every call."""
    store = Store(job["store"], job["store"], job["base_url"], "ECOSYNC_BENCH_TOKEN")
    budget = SharedBudget(
        job["store"], RateBudget(**job["budget"]), job["redis_url"], max_wait=3600
    )
    counter = redis.Redis.from_url(job["redis_url"])
    stamped = _Stamped(budget)
    calls = 0
    failures: dict[str, int] = {}
    with EcoManagerClient(store, job["token"], rate_limiter=stamped) as client:
        call = _caller(job["role"], client, job["pages"], job["seed"])
        while counter.incr(job["counter"]) <= job["calls"]:
            try:
                call()
            except ApiUnavailable:
                failures["ApiUnavailable"] = failures.get("ApiUnavailable", 0) + 1
                break  # the simulator is gone: nothing more to measure
            except ApiError as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            calls += 1
        stats = client.stats.as_dict()
    counter.close()
    budget.close()
    return {
        "role": job["role"],
        "calls": calls,
        "granted": stamped.granted,
        "failures": failures,
        "stats": stats,
    }


def main() -> None:
    """Read the job from stdin, run it, print the result."""
    logging.basicConfig(level=logging.WARNING)
    job = json.loads(sys.stdin.read())
    json.dump(run(job), sys.stdout)


if __name__ == "__main__":
    main()
