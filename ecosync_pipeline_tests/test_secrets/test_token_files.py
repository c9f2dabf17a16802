"""token_file: a store's token read from a file of its own at every use (Docker and
Kubernetes secrets), so a rotation needs no restart, and a bad file fails its store alone.

Against the simulator over HTTP, the real Redis and PostgreSQL, and a Dagster run; the
secret is looked for with the independent measure of test_adversarial (runs of 8 or more
of its characters), never with the redactor.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dagster import DagsterInstance, materialize

from ecosync_pipeline.cli import main
from ecosync_pipeline.config import Settings, parse_stores
from ecosync_pipeline.defs.orders.assets import build_new_orders
from ecosync_pipeline.defs.partitions import register_stores, store_partitions
from ecosync_pipeline.defs.resources import ecosync_resources
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.errors import ApiAuthError, ConfigError, SecretFileError
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline.secrets import MAX_SECRET_BYTES
from ecosync_pipeline_tests.helpers import settings_environ, settings_in, two_stores
from ecosync_pipeline_tests.test_adversarial.support import leaked, make_token

SPECS = two_stores("ECOSYNC_TEST_UNUSED_TOKEN_")
STORES = tuple(s.identifier for s in SPECS)


@dataclass
class FileWorld:
    """Two simulated stores whose tokens are files in ``secrets``, and settings for them."""

    simulator: Simulator
    settings: Settings
    secrets: Path
    environ: dict[str, str]

    def token_file(self, store: str) -> Path:
        return self.secrets / f"{store.lower()}_token"

    def rotate(self, store: str) -> str:
        """EcoManager issues ``store`` a new token (the old one is refused from now on)."""
        new = make_token()
        specs = [
            dataclasses.replace(s, token=new) if s.identifier == store else s
            for s in self.simulator_specs()
        ]
        self.simulator.configure(specs)
        return new

    def simulator_specs(self) -> list[StoreSpec]:
        return [self.simulator.spec(s) for s in STORES]


@pytest.fixture
def world(
    simulator: Simulator,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FileWorld]:
    simulator.configure([dataclasses.replace(s, token=make_token()) for s in SPECS])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    entries = []
    for spec in SPECS:
        path = secrets / f"{spec.identifier.lower()}_token"
        # As `echo TOKEN > file` and Kubernetes write them: a trailing newline.
        path.write_text(simulator.token(spec.identifier) + "\n", encoding="utf-8")
        entries.append(
            {
                "identifier": spec.identifier,
                "name": spec.name,
                "base_url": simulator.store_url(spec.identifier),
                "token_file": str(path),
                "per_page": 20,
                "import_per_page": 20,
                "requests_per_second": 200,
            }
        )
    stores_file = tmp_path / "stores.yaml"
    stores_file.write_text(yaml.safe_dump({"stores": entries}), encoding="utf-8")
    settings = settings_in(tmp_path, postgres_url, redis_url, stores_file)
    environ = settings_environ(settings)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    yield FileWorld(simulator, settings, secrets, environ)


def test_a_rotated_token_file_reaches_the_next_sync_of_the_same_process(
    world: FileWorld,
) -> None:
    runtime = Runtime.from_settings(world.settings)  # built once: no restart below
    try:
        assert runtime.sync("NATUR").reached_end
        old = world.token_file("NATUR").read_text(encoding="utf-8").strip()
        new = world.rotate("NATUR")
        with pytest.raises(ApiAuthError) as refused:
            runtime.sync("NATUR")  # the file still holds the old token
        message = str(refused.value)
        assert f"file {world.token_file('NATUR')}" in message, message
        assert leaked(message, old) == 0 and leaked(message, new) == 0
        world.token_file("NATUR").write_text(new, encoding="utf-8")
        again = runtime.sync("NATUR")
        assert again.reached_end and again.api_calls >= 1
    finally:
        runtime.close()


def test_a_client_reads_the_token_file_when_it_is_built(world: FileWorld) -> None:
    [natur, _] = world.settings.stores()
    assert natur.token_env is None and natur.token_file == str(world.token_file("NATUR"))
    with EcoManagerClient.from_store(natur) as client:
        assert client.fetch_page(1).orders
    new = world.rotate("NATUR")
    world.token_file("NATUR").write_text(f"{new}\n", encoding="utf-8")
    # The same Store (the stores file was not read again): only the file changed.
    with EcoManagerClient.from_store(natur) as client:
        assert client.fetch_page(1).orders


def test_a_missing_token_file_fails_its_store_alone_naming_the_store_and_the_file(
    world: FileWorld, caplog: pytest.LogCaptureFixture
) -> None:
    missing = world.token_file("PURNA")
    token = missing.read_text(encoding="utf-8").strip()
    missing.unlink()
    result = CliRunner().invoke(main, ["sync"], env=world.environ, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("PURNA")]
    assert "SecretFileError" in line and f"token_file {missing} cannot be read" in line, line
    assert "write the store's secret alone in that file" in line
    runtime = Runtime.from_settings(world.settings)
    try:
        # NATUR was synced by the same command: the missing file stopped PURNA only.
        assert runtime.chain.redis.snapshot(["NATUR"]).positions["NATUR"].target is not None
        assert "PURNA" not in runtime.chain.redis.snapshot(["PURNA"]).positions
    finally:
        runtime.close()
    assert leaked(result.output + caplog.text, token) == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"\xff\xfe" + b"A" * 40, "is not UTF-8 text"),
        (b"B" * (MAX_SECRET_BYTES + 1), f"is larger than {MAX_SECRET_BYTES} bytes"),
    ],
)
def test_a_token_file_that_cannot_give_a_token_is_named_with_its_reason(
    world: FileWorld, content: bytes, reason: str
) -> None:
    path = world.token_file("NATUR")
    path.write_bytes(content)
    [natur, _] = world.settings.stores()
    with pytest.raises(SecretFileError) as raised:
        EcoManagerClient.from_store(natur)
    error = raised.value
    assert (error.store, error.key, error.path) == ("NATUR", "token_file", str(path))
    assert str(error).startswith(f"store NATUR: token_file {path} {reason}; "), str(error)
    assert "AAAAAAAA" not in str(error) and "BBBBBBBB" not in str(error)


def test_a_token_file_that_is_a_folder_is_refused(world: FileWorld) -> None:
    path = world.token_file("NATUR")
    path.unlink()
    path.mkdir()
    [natur, _] = world.settings.stores()
    with pytest.raises(SecretFileError, match=f"token_file {path} cannot be read"):
        natur.token()


def test_a_token_file_holding_a_broken_token_is_refused_without_showing_it(
    world: FileWorld,
) -> None:
    token = make_token()
    world.token_file("NATUR").write_text(f"{token[:40]} {token[40:]}", encoding="utf-8")
    [natur, _] = world.settings.stores()
    with pytest.raises(ConfigError) as raised:
        EcoManagerClient.from_store(natur)
    shown = "".join(traceback.format_exception(raised.value))
    assert f"the token in file {world.token_file('NATUR')} contains spaces" in shown
    assert leaked(shown, token) == 0


def test_a_token_file_never_reaches_a_run_log_or_metadata(
    world: FileWorld, caplog: pytest.LogCaptureFixture
) -> None:
    with DagsterInstance.ephemeral() as instance:
        register_stores(instance, STORES)
        assets = [build_new_orders(store_partitions())]
        resources = ecosync_resources(world.settings)

        def run() -> str:
            result = materialize(
                assets,
                partition_key="NATUR",
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )
            return result.run_id

        token = world.token_file("NATUR").read_text(encoding="utf-8").strip()
        good = run()
        new = world.rotate("NATUR")  # the file is stale: the next run fails with a 401
        bad = run()
        texts = [caplog.text]
        for run_id in (good, bad):
            for entry in instance.all_logs(run_id):
                texts.append(entry.user_message)
                event = entry.dagster_event
                if event is not None:
                    texts.append(repr(event.event_specific_data))
        failed = instance.get_run_by_id(bad)
        assert failed is not None and failed.is_failure
    text = "\n".join(texts)
    assert f"file {world.token_file('NATUR')}" in text  # the failure names the file
    assert leaked(text, token) == 0 and leaked(text, new) == 0


def stores_yaml(**fields: str) -> str:
    lines = ["stores:", "  - identifier: S1", "    name: One", "    base_url: https://one.example"]
    lines += [f"    {k}: {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def test_a_store_naming_both_a_token_variable_and_a_token_file_is_refused() -> None:
    text = stores_yaml(token_env="TOKEN_ONE", token_file="/run/secrets/one")
    with pytest.raises(ConfigError, match="line 2: store S1: give token_env or token_file, not"):
        parse_stores(text, "stores.yaml")


def test_a_store_naming_neither_is_refused_with_both_names() -> None:
    with pytest.raises(ConfigError, match=r"line 2: store is missing token_env \(or token_file\)"):
        parse_stores(stores_yaml(), "stores.yaml")


@pytest.mark.parametrize("path", ["secrets/one", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"])
def test_a_token_file_must_be_an_absolute_path_not_a_token(path: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stores(stores_yaml(token_file=path), "stores.yaml")
    assert "line 2: store S1: token_file must be the absolute path" in str(raised.value)
    assert path not in str(raised.value)
