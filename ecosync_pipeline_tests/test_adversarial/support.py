"""Running `ecosync sync` against the adversarial server, and reading what it left behind."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import create_engine, select

from ecosync_pipeline.cli import main
from ecosync_pipeline.storage.schema import orders
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore

ALPHANUMERIC = string.ascii_letters + string.digits


def dialect(database_url: str) -> str:
    """postgresql or sqlite, for the cases table."""
    return database_url.split(":", 1)[0].split("+", 1)[0]


def make_token() -> str:
    """A fresh 80-character token, as EcoManager issues them."""
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(80))


def longest_run(text: str, secret: str) -> int:
    """The longest run of consecutive characters of ``secret`` found in ``text``.

    Independent of the code under test: substring search, binary search on the length
    (a run of n characters holds runs of every shorter length).
    """
    low, high = 0, len(secret)
    while low < high:
        size = (low + high + 1) // 2
        if any(secret[i : i + size] in text for i in range(len(secret) - size + 1)):
            low = size
        else:
            high = size - 1
    return low


def leaked(text: str, secret: str) -> int:
    """Characters of ``secret`` shown in runs of 8 or more (the issue's measure): 0 is clean."""
    run = longest_run(text, secret)
    return run if run >= 8 else 0


@dataclass
class CliWorld:
    """A stores file for some adversarial stores, and the environment `ecosync` reads."""

    server: AdversarialServer
    env: dict[str, str]
    stores_file: Path
    database_url: str

    def configure(self, *stores: AdversarialStore, extra: dict[str, Any] | None = None) -> None:
        """Serve ``stores`` and list them in the stores file (tokens in the environment)."""
        self.server.serve(*stores)
        lines = ["stores:"]
        for s in stores:
            variable = f"ECOSYNC_TOKEN_{s.identifier}"
            self.env[variable] = s.token
            options = {"per_page": 20, "import_per_page": 20, "requests_per_second": 1000}
            lines += [
                f"  - identifier: {s.identifier}",
                f"    name: {s.identifier} shop",
                f"    base_url: {self.server.store_url(s.identifier)}",
                f"    token_env: {variable}",
            ]
            lines += [f"    {k}: {v}" for k, v in {**options, **(extra or {})}.items()]
        self.stores_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def sync(self, *args: str) -> Result:
        """``ecosync sync ARGS`` in this process (its logs reach caplog)."""
        return self.run("sync", *args)

    def run(self, *args: str) -> Result:
        """``ecosync ARGS`` in this process."""
        return CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)

    def stored(self, store: str) -> dict[int, dict[str, Any]]:
        """The orders table's rows of one store, by order id."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(orders).where(orders.c.store == store)).mappings()
                return {int(r["order_id"]): dict(r) for r in rows}
        finally:
            engine.dispose()


def missing(world: CliWorld, store: AdversarialStore, expected: Sequence[int]) -> int:
    """How many of ``expected`` order ids the orders table lacks."""
    return len(set(expected) - set(world.stored(store.identifier)))


def cli_world_for(
    server: AdversarialServer, database_url: str, redis_url: str, folder: Path
) -> CliWorld:
    """A CliWorld whose stores file, backup and database are this test's own."""
    env = {
        "ECOSYNC_DATABASE_URL": database_url,
        "ECOSYNC_REDIS_URL": redis_url,
        "ECOSYNC_STORES_FILE": str(folder / "stores.yaml"),
        "ECOSYNC_BACKUP_PATH": str(folder / "backup" / "sync-positions.json"),
    }
    return CliWorld(server, env, folder / "stores.yaml", database_url)
