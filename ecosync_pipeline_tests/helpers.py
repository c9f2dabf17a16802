"""Building blocks the tests share: a Runtime over the simulator, and reconciliation."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecosync_pipeline.config import Settings, Store
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.storage import duplicate_count, iter_order_ids


def write_stores_file(path: Path, stores: Sequence[Store]) -> Path:
    """A stores YAML file for these stores (the simulator's URLs and token variables)."""
    lines = ["stores:"]
    for s in stores:
        lines += [
            f"  - identifier: {s.identifier}",
            f"    name: {s.name}",
            f"    base_url: {s.base_url}",
            f"    token_env: {s.token_env}",
            f"    per_page: {s.per_page}",
            f"    import_per_page: {s.import_per_page}",
            f"    requests_per_second: {s.requests_per_second}",
            f"    read_mode: {s.read_mode}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings_in(tmp_path: Path, database_url: str, redis_url: str, stores_file: Path) -> Settings:
    """Settings on the test's databases and ``stores_file``, the backup in the test's folder,
    as the Dagster and secrets tests build theirs."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        stores_file=str(stores_file),
        backup_path=str(tmp_path / "backup" / "sync-positions.json"),
    )


def ecosync_environ(
    database_url: str, redis_url: str, stores_file: str | Path, backup_path: str | Path
) -> dict[str, str]:
    """The ECOSYNC_* variables that point a command or a child process at a test's orders
    database, Redis, stores file and backup, as the tests' settings do."""
    return {
        "ECOSYNC_DATABASE_URL": database_url,
        "ECOSYNC_REDIS_URL": redis_url,
        "ECOSYNC_STORES_FILE": str(stores_file),
        "ECOSYNC_BACKUP_PATH": str(backup_path),
    }


def settings_environ(settings: Settings) -> dict[str, str]:
    """ecosync_environ of ``settings``: what another process needs to see the test's setup."""
    return ecosync_environ(
        settings.database_url, settings.redis_url, settings.stores_file, settings.backup_path
    )


@dataclass
class World:
    """A simulator with stores, the settings pointing at it, and the token variables set."""

    simulator: Simulator
    settings: Settings
    stores: list[Store]

    def runtime(self) -> Runtime:
        """A fresh Runtime (as a new process would build it)."""
        return Runtime.from_settings(self.settings, stores=self.stores)

    @contextmanager
    def open(self) -> Iterator[Runtime]:
        runtime = self.runtime()
        try:
            yield runtime
        finally:
            runtime.close()


def two_stores(token_prefix: str) -> tuple[StoreSpec, ...]:
    """The two small stores the Dagster and browser tests sync, tokens in ``{prefix}{STORE}``.

    Small on purpose: a full sync of both is a handful of pages. PURNA's ids start at
    500,000 with gaps (id / 20 is nowhere near its pages), so a restore must locate its
    page on the API; NATUR's are dense-ish from 1.
    """
    return (
        StoreSpec(
            "NATUR",
            name="Natura Bio",
            first_id=1,
            count=95,
            gap_rate=0.05,
            token_env=f"{token_prefix}NATUR",
        ),
        StoreSpec(
            "PURNA",
            name="Purna Maison",
            first_id=500_000,
            count=63,
            stride=7,
            gap_rate=0.05,
            token_env=f"{token_prefix}PURNA",
        ),
    )


def make_world(
    simulator: Simulator,
    specs: Sequence[StoreSpec],
    *,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    per_page: int = 20,
    import_per_page: int | None = None,
    requests_per_second: float = 1000.0,
) -> World:
    """Configure the simulator with ``specs`` and build settings that sync from it."""
    simulator.configure(list(specs))
    stores = []
    for spec in specs:
        base = simulator.as_store(spec.identifier, per_page=per_page)
        store = Store(
            identifier=base.identifier,
            name=base.name,
            base_url=base.base_url,
            token_env=base.token_env,
            per_page=per_page,
            requests_per_second=requests_per_second,
            import_per_page=import_per_page or per_page,
        )
        monkeypatch.setenv(store.token_env, simulator.token(spec.identifier))
        stores.append(store)
    stores_file = write_stores_file(tmp_path / "stores.yaml", stores)
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        stores_file=str(stores_file),
        backup_path=str(tmp_path / "sync-positions" / "sync-positions.json"),
    )
    return World(simulator=simulator, settings=settings, stores=stores)


@dataclass(frozen=True)
class Reconciliation:
    """The orders table against the simulator's ids for one store."""

    expected: int
    stored: int
    missing: int
    unexpected: int
    duplicated: int


def reconcile(
    runtime: Runtime, simulator: Simulator, store: str, *, up_to: int | None = None
) -> Reconciliation:
    """Compare the ids in the database with the simulator's (ids deleted upstream that we
    synced earlier are 'unexpected', not an error: the database keeps history)."""
    truth = {i for i in simulator.ids(store) if up_to is None or i <= up_to}
    stored = set(iter_order_ids(runtime.engine, store))
    return Reconciliation(
        expected=len(truth),
        stored=len(stored),
        missing=len(truth - stored),
        unexpected=len(stored - truth),
        duplicated=duplicate_count(runtime.engine, store),
    )


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def readme_commands(section: str) -> list[list[str]]:
    """The commands of the README section ``section``'s bash blocks, split as a shell would
    (comments dropped): the tests run what the README prints."""
    text = (PROJECT_ROOT / "README.md").read_text()
    part = text[text.index(f"\n## {section}\n") :]
    part = part[: part.index("\n## ", 5)]
    blocks = re.findall(r"```bash\n(.*?)```", part, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    return [shlex.split(line, comments=True) for line in lines]
