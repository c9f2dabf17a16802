"""`ecosync bench sensor`: the tick time of the cache-loss probe for 10 to 10,000 stores.

For each store count N, positions for N stores are written to the benchmark's own Redis
database (one MULTI/EXEC, as a recovery writes them), and each method is timed over
``ticks`` ticks, with every store healthy and again after a flush:

    probe           RedisLayer.read_many: MGET of every key, the sentinel, INFO (one trip)
    detect          positions.loss.detect on a fresh probe, as the sensor calls it each tick
    stores file     config.load_stores of the N-store file, which the sensor reads each tick
    dagster sensor  cache_loss_sensor evaluated for real (build_sensor_context, ephemeral
                    instance): reads the stores file, opens Redis, watches, decides

The core methods reuse one Redis connection (a long-lived process); the Dagster sensor
opens its own each tick, as it does under the daemon. The goal: 1,000 stores in < 1 s.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecosync_pipeline.config import Settings, load_stores
from ecosync_pipeline.lab.bench.report import Spread, format_table, machine
from ecosync_pipeline.lab.bench.resources import (
    BENCH_REDIS_MARKER,
    BenchRedis,
    bench_redis_url,
    claimed_redis,
    temporary_folder,
)
from ecosync_pipeline.positions.loss import detect
from ecosync_pipeline.positions.model import SyncPosition, utc_now
from ecosync_pipeline.positions.redis_layer import RedisLayer

logger = logging.getLogger(__name__)

DEFAULT_STORE_COUNTS: tuple[int, ...] = (10, 100, 1_000, 10_000)
DEFAULT_TICKS = 7
GOAL_STORES = 1_000
GOAL_SECONDS = 1.0
ROW_BUDGET_SECONDS = 30.0
"""A row stops after this many seconds once it has MIN_TICKS ticks (slow 10,000-store rows)."""
MIN_TICKS = 3
STATES = ("healthy", "flushed")


@dataclass(frozen=True)
class SensorRow:
    """One method timed over several ticks for N stores in one Redis state."""

    stores: int
    state: str
    method: str
    seconds: Spread
    verdict: str
    """What the last tick concluded (e.g. "ok", "flushed:<generation>", "skip")."""


@dataclass
class SensorReport:
    """Every row, and whether the goal (1,000 stores in under 1 s) holds."""

    rows: list[SensorRow]
    ticks: int
    sensor_available: bool
    sensor_note: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    HEADER = ("stores", "state", "method", "ticks", "median ms", "min ms", "max ms", "verdict")

    def goal(self) -> dict[str, bool]:
        """Per method: its median tick at GOAL_STORES stores under GOAL_SECONDS, every state."""
        verdicts: dict[str, bool] = {}
        for r in self.rows:
            if r.stores == GOAL_STORES:
                ok = r.seconds.median < GOAL_SECONDS
                verdicts[r.method] = verdicts.get(r.method, True) and ok
        return verdicts

    def table(self) -> str:
        """The rows as a text table, with the goal and notes."""
        body = format_table(
            self.HEADER,
            [
                (
                    r.stores,
                    r.state,
                    r.method,
                    r.seconds.samples,
                    round(r.seconds.median * 1000, 2),
                    round(r.seconds.minimum * 1000, 2),
                    round(r.seconds.maximum * 1000, 2),
                    r.verdict,
                )
                for r in self.rows
            ],
        )
        goal = self.goal()
        verdicts = ", ".join(f"{m} {'met' if ok else 'NOT met'}" for m, ok in goal.items())
        lines = [
            f"ticks per row: {self.ticks} (at least {MIN_TICKS}, fewer once a row has taken "
            f"{ROW_BUDGET_SECONDS:g} s); goal {GOAL_STORES:,} stores under {GOAL_SECONDS:g} s "
            f"per tick: " + (verdicts or "not measured"),
            "dagster sensor: "
            + ("evaluated for real" if self.sensor_available else "not available")
            + (f" ({self.sensor_note})" if self.sensor_note else ""),
            *self.notes,
            f"whole command {self.seconds:.1f} s on {machine()['cpus']} CPUs",
        ]
        return body + "\n\n" + "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "benchmark": "sensor",
            "ticks": self.ticks,
            "goal": {"stores": GOAL_STORES, "seconds": GOAL_SECONDS, "met": self.goal()},
            "sensor_available": self.sensor_available,
            "sensor_note": self.sensor_note,
            "seconds": round(self.seconds, 3),
            "machine": machine(),
            "notes": self.notes,
            "rows": [
                {**{k: v for k, v in asdict(r).items() if k != "seconds"}, **_ms(r.seconds)}
                for r in self.rows
            ],
        }


def _ms(spread: Spread) -> dict[str, float]:
    return {
        "median_ms": round(spread.median * 1000, 3),
        "min_ms": round(spread.minimum * 1000, 3),
        "max_ms": round(spread.maximum * 1000, 3),
    }


def store_ids(count: int) -> list[str]:
    """Identifiers of ``count`` benchmark stores (S00000, S00001, ...)."""
    return [f"S{i:05d}" for i in range(count)]


def _positions(ids: Sequence[str]) -> list[SyncPosition]:
    now = utc_now()
    return [
        SyncPosition(
            store=sid,
            store_name=sid,
            last_page=100 + n,
            first_id=1981 + 20 * n,
            last_id=2000 + 20 * n,
            last_order_id=2000 + 20 * n,
            updated_at=now,
            source="redis",
            verified=True,
        )
        for n, sid in enumerate(ids)
    ]


def write_stores_file(path: Path, ids: Sequence[str]) -> Path:
    """A stores file listing ``ids`` (the sensor reads it every tick)."""
    lines = ["stores:"]
    for sid in ids:
        lines += [
            f"  - identifier: {sid}",
            f"    name: Store {sid}",
            f"    base_url: http://127.0.0.1:9/{sid}",
            f"    token_env: ECOSYNC_TOKEN_{sid}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _time(ticks: int, tick: Callable[[], str]) -> tuple[Spread, str]:
    samples: list[float] = []
    verdict = ""
    for _ in range(ticks):
        started = time.perf_counter()
        verdict = tick()
        samples.append(time.perf_counter() - started)
        if len(samples) >= MIN_TICKS and sum(samples) > ROW_BUDGET_SECONDS:
            break
    return Spread.of(samples), verdict


class _DagsterSensor:
    """The real cache_loss_sensor, evaluated with build_sensor_context (if it exists)."""

    def __init__(self) -> None:
        from dagster import DagsterInstance, build_sensor_context

        from ecosync_pipeline.defs.positions.recovery_job import recover_sync_positions
        from ecosync_pipeline.defs.positions.sensors import build_cache_loss_sensor
        from ecosync_pipeline.defs.resources import ecosync_resources

        self._context = build_sensor_context
        self._resources = ecosync_resources
        self._sensor = build_cache_loss_sensor(recover_sync_positions)
        self._instance = DagsterInstance.ephemeral()

    def tick(self, settings: Settings, cursor: str | None) -> tuple[str, str | None]:
        """Evaluate one tick; return (verdict, the cursor it leaves)."""
        with self._context(
            instance=self._instance,
            cursor=cursor,
            resources=self._resources(settings),
        ) as context:
            result = self._sensor.evaluate_tick(context)
        if result.run_requests:
            verdict = "run " + ",".join(str(r.run_key) for r in result.run_requests)
        else:
            verdict = "skip: " + (result.skip_message or "")
        return verdict, result.cursor

    def close(self) -> None:
        self._instance.dispose()


def _sensor_tick(sensor: _DagsterSensor, settings: Settings, cursor: str | None) -> str:
    return sensor.tick(settings, cursor)[0]


def _load_sensor() -> tuple[_DagsterSensor | None, str]:
    try:
        return _DagsterSensor(), ""
    except Exception as exc:  # the Dagster layer is optional here: time the core alone
        return None, f"{type(exc).__name__}: {exc}"


def _measure_count(
    n: int,
    ticks: int,
    r: BenchRedis,
    folder: Path,
    dagster: _DagsterSensor | None,
) -> list[SensorRow]:
    ids = store_ids(n)
    r.flush()
    layer = RedisLayer.from_url(r.url)
    rows: list[SensorRow] = []
    try:
        if not layer.write_many(_positions(ids)):
            raise RuntimeError(f"writing {n} positions to {r.url} failed")
        stores_file = write_stores_file(folder / f"stores-{n}.yaml", ids)
        settings = Settings(
            database_url=f"sqlite:///{folder / 'unused.db'}",
            redis_url=r.url,
            stores_file=str(stores_file),
            backup_path=str(folder / "sync-positions.json"),
        )
        generation = detect(layer.read_many(ids), ids).cursor
        cursor = dagster.tick(settings, None)[1] if dagster is not None else None
        for state in STATES:
            if state == "flushed":
                r.flush()

            def do_probe() -> str:
                snap = layer.read_many(ids)
                return f"{len(snap.positions)} keys"

            def do_detect() -> str:
                loss = detect(layer.read_many(ids), ids, cursor=generation, summaries=lambda: None)
                return loss.event_id or loss.redis_state

            def do_stores() -> str:
                return f"{len(load_stores(stores_file))} stores"

            methods: list[tuple[str, Callable[[], str]]] = [
                ("probe", do_probe),
                ("detect", do_detect),
                ("stores file", do_stores),
            ]
            if dagster is not None:
                methods.append(
                    ("dagster sensor", functools.partial(_sensor_tick, dagster, settings, cursor))
                )
            for name, tick in methods:
                spread, verdict = _time(ticks, tick)
                rows.append(SensorRow(n, state, name, spread, verdict[:60]))
    finally:
        layer.close()
    return rows


def run_sensor_bench(
    *,
    store_counts: Sequence[int] = DEFAULT_STORE_COUNTS,
    ticks: int = DEFAULT_TICKS,
    redis_url: str | None = None,
    redis_marker: str = BENCH_REDIS_MARKER,
    dagster: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SensorReport:
    """Time the loss probe (and the Dagster sensor, when it can be loaded) per store count."""
    if ticks < 1:
        raise ValueError(f"ticks must be at least 1, got {ticks}")
    say = progress or (lambda message: logger.info("%s", message))
    started = time.perf_counter()
    sensor, note = _load_sensor() if dagster else (None, "skipped")
    report = SensorReport(rows=[], ticks=ticks, sensor_available=sensor is not None)
    report.sensor_note = note
    try:
        with (
            claimed_redis(redis_url or bench_redis_url(), redis_marker) as r,
            temporary_folder("ecosync-bench-sensor-") as folder,
        ):
            for n in store_counts:
                rows = _measure_count(n, ticks, r, folder, sensor)
                report.rows.extend(rows)
                say(
                    f"{n:,} stores: "
                    + ", ".join(
                        f"{x.state}/{x.method} {x.seconds.median * 1000:.1f} ms" for x in rows
                    )
                )
    finally:
        if sensor is not None:
            sensor.close()
    report.notes.append(
        "probe/detect reuse one Redis connection; the dagster sensor builds its "
        "resources, reads the stores file and connects to Redis on every tick"
    )
    report.seconds = time.perf_counter() - started
    return report
