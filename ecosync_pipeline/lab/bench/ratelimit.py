"""``ecosync bench ratelimit``: mixed traffic of several processes on one store, under the
store's shared budget, against the simulator's four windows of the contract.

The simulator runs in a process of its own and enforces EcoManager's limits (5/s, 50/min,
1,000/h, 10,000/day, Laravel's fixed windows); the store's budget is the default one
(4/s, 40/min, 800/h, 8,000/day) counted in the benchmark's Redis database. Both are
scaled by the same time scale, so a day passes in minutes. Worker processes (a sync, a
reconcile-like reader, checks, a recovery, and more of them with --processes) call
until the total is reached. The report gives the 429s the simulator answered (by
window), the throughput against the best the budget allows for as many calls (the
earliest-possible schedule under every window), and the busiest interval of each
window's length against the budget's limit and the server's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ecosync_pipeline.ecomanager.budget import TICKS, rates_for
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.lab.bench.ratelimit_worker import ROLES
from ecosync_pipeline.lab.bench.report import machine
from ecosync_pipeline.lab.bench.resources import BENCH_REDIS_MARKER, claimed_redis
from ecosync_pipeline.lab.bench.simserver import served_simulator
from ecosync_pipeline.lab.simulator import StoreSpec
from ecosync_pipeline.ratebudget import WINDOW_NAMES, RateBudget
from ecosync_pipeline.tables import format_table

STORE = "NATUR"
ORDERS = 20_000
SERVER_LIMITS = {"second": 5, "minute": 50, "hour": 1000, "day": 10_000}
COUNTER = "ecosync:bench:ratelimit:calls"
WORKER_TIMEOUT = 3 * 3600.0


@dataclass(frozen=True)
class WindowPeak:
    """One window: the budget's limit, the server's, the most requests the budget let
    through in any interval of the window's length, and the server's 429s for it."""

    window: str
    budget: int
    server: int
    peak: int
    refused: int


@dataclass
class RateLimitReport:
    """What ``ecosync bench ratelimit`` measured."""

    calls: int
    processes: int
    time_scale: float
    calls_by_role: dict[str, int]
    # Requests the shared budget let through, retries included: a call whose first
    # attempt timed out reaches the server twice, and both attempts went through the budget.
    granted: int
    server_requests: int
    server_ok: int
    server_429: int
    seconds: float
    ideal_seconds: float
    windows: list[WindowPeak] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine)

    @property
    def ratio(self) -> float:
        """Throughput against the best schedule the budget allows (1.0 = as fast as it)."""
        return self.ideal_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def scaled_days(self) -> float:
        """How many (scaled) days the run lasted."""
        return self.seconds * self.time_scale / 86_400

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived figures."""
        out = asdict(self)
        out["ratio"] = round(self.ratio, 4)
        out["scaled_days"] = round(self.scaled_days, 4)
        return out

    def table(self) -> str:
        """The report as printed."""
        roles = ", ".join(f"{n} {r}" for r, n in self.calls_by_role.items())
        rows = [
            (w.window, f"{w.budget:,}", f"{w.server:,}", f"{w.peak:,}", f"{w.refused:,}")
            for w in self.windows
        ]
        lines = [
            f"{self.calls:,} calls by {self.processes} processes on one store ({roles}); "
            f"time scale {self.time_scale:g} (a day lasts {86_400 / self.time_scale:.0f} s)",
            "",
            format_table(
                ("window", "budget limit", "server limit", "busiest interval", "server 429s"),
                rows,
            ),
            "",
            f"simulator: {self.server_requests:,} requests, {self.server_ok:,} ok, "
            f"{self.server_429:,} answered 429",
            f"run: {self.seconds:.1f} s ({self.scaled_days:.2f} scaled days); the earliest "
            f"schedule the budget allows for {self.server_requests:,} calls: "
            f"{self.ideal_seconds:.1f} s; throughput ratio {self.ratio:.3f}",
        ]
        if self.failures:
            lines.append(f"calls that failed: {self.failures}")
        return "\n".join(lines)


def ideal_seconds(calls: int, rates: Sequence[tuple[int, float]]) -> float:
    """From the first call to the last when every call goes as early as the windows let it.

    ``rates`` are (limit, seconds): no interval of that length may hold more than limit
    calls, so call k waits for call k - limit plus the interval (greedy is optimal).
    """
    times: list[float] = []
    for k in range(calls):
        earliest = times[-1] if times else 0.0
        for limit, seconds in rates:
            if k >= limit:
                earliest = max(earliest, times[k - limit] + seconds)
        times.append(earliest)
    return times[-1] - times[0] if times else 0.0


def busiest(stamps: Sequence[float], seconds: float) -> int:
    """The most ``stamps`` (sorted) in any interval of ``seconds``."""
    best = start = 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def _start_worker(job: dict[str, Any]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ecosync_pipeline.lab.bench.ratelimit_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(job).encode())
    process.stdin.close()
    process.stdin = None  # sent: communicate() must not flush it again
    return process


def _collect(workers: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    results = []
    for process in workers:
        out, _ = process.communicate(timeout=WORKER_TIMEOUT)
        if process.returncode != 0:
            raise EcosyncError(
                f"a benchmark worker exited with status {process.returncode}; rerun with "
                "fewer --processes or see its traceback above"
            )
        results.append(json.loads(out))
    return results


def run_ratelimit_bench(
    *,
    calls: int,
    time_scale: float,
    processes: int,
    redis_url: str,
    redis_marker: str = BENCH_REDIS_MARKER,
    progress: Callable[[str], None] = lambda _: None,
) -> RateLimitReport:
    """Run the mixed traffic and measure it (see the module docstring)."""
    budget = RateBudget(time_scale=time_scale)
    with (
        claimed_redis(redis_url, redis_marker) as bench_redis,
        served_simulator([StoreSpec(STORE, count=ORDERS)]) as sim,
    ):
        bench_redis.flush()
        sim.control.set_faults(STORE, rate_windows=True, time_scale=time_scale)
        sim.control.reset_counts(STORE)
        base = {
            "store": STORE,
            "base_url": f"{sim.url}/{STORE}",
            "token": sim.token(STORE),
            "redis_url": redis_url,
            "budget": asdict(budget),
            "calls": calls,
            "counter": COUNTER,
            "pages": ORDERS // 100,
        }
        progress(f"{processes} processes, {calls:,} calls, time scale {time_scale:g}")
        started = time.monotonic()
        workers = [
            _start_worker({**base, "role": ROLES[i % len(ROLES)], "seed": i})
            for i in range(processes)
        ]
        try:
            results = _collect(workers)
        finally:
            for process in workers:  # only the workers this run started
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        progress(f"done in {time.monotonic() - started:.0f} s")
        described = sim.control.describe(STORE)
        bench_redis.flush()
    return _report(calls, processes, budget, results, described)


def _report(
    calls: int,
    processes: int,
    budget: RateBudget,
    results: list[dict[str, Any]],
    described: dict[str, Any],
) -> RateLimitReport:
    stamps = sorted(t for r in results for t in r["granted"])
    by_role: dict[str, int] = {}
    failures: dict[str, int] = {}
    for r in results:
        by_role[r["role"]] = by_role.get(r["role"], 0) + int(r["calls"])
        for name, count in r["failures"].items():
            failures[name] = failures.get(name, 0) + count
    requests = described["requests"]
    usage = described["rate_windows"]
    rates = [(r.limit, r.interval / TICKS) for r in rates_for(budget)]
    windows = [
        WindowPeak(
            name,
            budget.limits()[name],
            SERVER_LIMITS[name],
            busiest(stamps, budget.window_seconds(name)),
            int(usage[name]["refused"]),
        )
        for name in WINDOW_NAMES
    ]
    return RateLimitReport(
        calls=sum(by_role.values()),
        processes=processes,
        time_scale=budget.time_scale,
        calls_by_role=by_role,
        granted=len(stamps),
        server_requests=int(requests["total"]),
        server_ok=int(requests["ok"]),
        server_429=int(requests["rate_limited"]),
        seconds=stamps[-1] - stamps[0] if stamps else 0.0,
        ideal_seconds=ideal_seconds(int(requests["total"]), rates),
        windows=windows,
        failures=failures,
    )
