"""Running `ecosync bench mirror`: the stores, the databases, the scenarios in order."""

from __future__ import annotations

import os
import time

from ecosync_pipeline.config import Settings
from ecosync_pipeline.lab.bench.mirror import (
    NATUR_LAST_ID,
    SCENARIOS,
    SWAP_ORDERS,
    MirrorReport,
    Progress,
    _no_meta,
    _seed_rows,
    _swap_seed,
)
from ecosync_pipeline.lab.bench.mirror_large import (
    cursor_rows,
    deletion_rows,
    full_reconcile_rows,
    status_rows,
)
from ecosync_pipeline.lab.bench.mirror_world import MirrorWorld, mirror_world
from ecosync_pipeline.lab.bench.resources import (
    bench_redis_url,
    claimed_redis,
    temporary_folder,
    temporary_postgres,
)
from ecosync_pipeline.lab.simulator import StoreSpec, demo_token

BIG, TENTH = "NATUR", "NATURX"


def _specs(seeds: int, small: bool) -> list[StoreSpec]:
    last = NATUR_LAST_ID // 40 if small else NATUR_LAST_ID
    specs = [StoreSpec(BIG, first_id=1, last_id=last, gap_rate=0.03)]
    specs.append(StoreSpec(TENTH, first_id=1, last_id=last // 10, gap_rate=0.03))
    for seed in range(1, seeds + 1):
        for prefix in ("P", "C"):
            specs.append(StoreSpec(f"{prefix}{seed}", count=SWAP_ORDERS, gap_rate=0.03, seed=seed))
    specs += [StoreSpec(s, count=SWAP_ORDERS, gap_rate=0.03, seed=99) for s in ("NMP", "NMC")]
    return specs


def _configure(world: MirrorWorld, specs: list[StoreSpec]) -> None:
    world.simulator.configure(specs)
    for spec in specs:
        paged = {"per_page": 20, "import_per_page": 20}
        if spec.identifier in (BIG, TENTH):
            world.add(spec, per_page=20, import_per_page=100, reconcile_calls_per_day=100_000)
        elif spec.identifier.startswith("C") or spec.identifier == "NMC":
            world.add(spec, bare=spec.identifier == "NMC", read_mode="cursor", **paged)
        else:
            world.add(spec, bare=spec.identifier == "NMP", **paged)


def run_mirror_bench(
    *,
    seeds: int = 10,
    small: bool = False,
    redis_url: str | None = None,
    scenarios: tuple[str, ...] = SCENARIOS,
    progress: Progress,
) -> MirrorReport:
    """The scenarios of the mirror benchmark (all by default), on their own databases."""
    report = MirrorReport()
    specs = _specs(seeds, small)
    environ = {spec.token_env: demo_token(spec.identifier) for spec in specs}
    with (
        claimed_redis(redis_url or bench_redis_url()) as redis,
        temporary_postgres() as database_url,
        temporary_folder() as folder,
    ):
        settings = Settings(
            database_url=database_url,
            redis_url=redis.url,
            stores_file=str(folder / "unused.yaml"),
            backup_path=str(folder / "sync-positions.json"),
        )
        # The clients read each store's token from its variable, as in production.
        os.environ.update(environ)
        with mirror_world(settings, environ) as world:
            _configure(world, specs)
            if "swaps" in scenarios:
                results = []
                for seed in range(1, seeds + 1):
                    results.append(_swap_seed(world, seed))
                    progress(f"swaps, seed {seed}: {results[-1]['pages'][0].missing} missing")
                report.seeds = [_plain(r) for r in results]
                report.rows += _seed_rows(f"swaps during a run, {SWAP_ORDERS:,} orders", results)
            if "no-meta" in scenarios:
                report.rows += _seed_rows("a deletion during a run, no meta", _no_meta(world))
            if set(scenarios) & {"reconcile", "deletions", "statuses", "cursor"}:
                _natur(world, scenarios, report, progress)
    return report


def _natur(
    world: MirrorWorld, scenarios: tuple[str, ...], report: MirrorReport, progress: Progress
) -> None:
    """Load the NATUR-sized store (and its tenth), then its scenarios in order."""
    progress("loading the NATUR-sized store")
    started = time.perf_counter()
    with world.runtime() as rt:
        for store_id in (TENTH, BIG):
            rt.sync(store_id)
    progress(f"loaded in {time.perf_counter() - started:.0f} s")
    steps = (
        ("reconcile", lambda: full_reconcile_rows(world, BIG, TENTH)),
        ("deletions", lambda: deletion_rows(world, BIG)),
        ("statuses", lambda: status_rows(world, BIG)),
        ("cursor", lambda: cursor_rows(world, BIG, progress)),
    )
    for name, step in steps:
        if name in scenarios:
            report.rows += step()
            progress(f"{name} done")


def _plain(result: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in result.items():
        if isinstance(value, tuple):
            audit, verdict, calls = value
            out[key] = {"audit": vars(audit), "check": verdict, "calls": calls}
        else:
            out[key] = value
    return out
