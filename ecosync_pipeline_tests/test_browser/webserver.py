"""A dagster-webserver in a child process over a temporary DAGSTER_HOME, and its GraphQL.

The instance the server gets launches runs at once (DefaultRunCoordinator): a click on
Materialize starts a run worker with no daemon running, which is what a browser test
needs. The server runs in its own process group so stopping it also ends the code
server and any run worker it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ecosync_pipeline.asgi import free_port

WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
DEFINITIONS_MODULE = "ecosync_pipeline.definitions"
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

# No daemon in the test: runs must start when launched, not wait in a queue. Telemetry
# and the first-run tour are off so nothing reaches out or covers the page.
INSTANCE_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
python_logs:
  managed_python_loggers:
    - ecosync_pipeline
  python_log_level: INFO
"""

WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUNS_QUERY = """
query {
  runsOrError(limit: 20) {
    __typename
    ... on Runs {
      results { runId jobName status creationTime startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

MATERIALIZATIONS_QUERY = """
query Materializations($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 20) {
        runId
        timestamp
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""

RUN_ERRORS_QUERY = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""


CHECKS_QUERY = """
query Checks($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          executionForLatestMaterialization {
            status
            runId
            evaluation { description }
          }
        }
      }
    }
  }
}
"""


SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState { id status ticks(limit: 50) { timestamp endTimestamp status } }
    }
    ... on PythonError { message }
  }
}
"""

STOP_SENSOR_MUTATION = """
mutation Stop($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}
"""


class WebserverError(AssertionError):
    """The webserver did not start, or answered GraphQL with an error."""


def write_instance(home: Path) -> Path:
    """DAGSTER_HOME with a dagster.yaml that needs no daemon; returns the home."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML, encoding="utf-8")
    return home


@dataclass
class Webserver:
    """A running dagster-webserver: its URL, process, log file and a GraphQL client."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output (stdout and stderr), for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no webserver log)"
        return text[-chars:]

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; WebserverError on an HTTP or GraphQL error."""
        response = self.client.post(
            "/graphql", json={"query": query, "variables": dict(variables or {})}
        )
        if response.status_code != 200:
            raise WebserverError(
                f"GraphQL answered HTTP {response.status_code}: {response.text[:1000]}"
            )
        body = response.json()
        if body.get("errors"):
            raise WebserverError(f"GraphQL errors: {body['errors']}")
        data: dict[str, Any] = body["data"]
        return data

    def wait_until_ready(self, timeout: float) -> None:
        """Wait until the server answers and its code location is loaded, or fail saying why."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise WebserverError(
                    f"dagster-webserver exited with code {self.process.returncode} before it "
                    f"served {self.url}:\n{self.log_tail()}"
                )
            try:
                if self.client.get("/server_info").status_code == 200:
                    state = self._location_state()
                    if state == "loaded":
                        return
                    last = state
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise WebserverError(
            f"dagster-webserver at {self.url} was not ready after {timeout:.0f} s "
            f"({last}):\n{self.log_tail()}"
        )

    def _location_state(self) -> str:
        workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            return f"workspace error: {workspace.get('message')}"
        entries = workspace["locationEntries"]
        if not entries:
            return "no code location yet"
        for entry in entries:
            loaded = entry["locationOrLoadError"]
            if loaded and loaded["__typename"] == "PythonError":
                raise WebserverError(
                    f"code location {entry['name']} failed to load: {loaded['message']}"
                )
            if entry["loadStatus"] != "LOADED" or loaded is None:
                return f"code location {entry['name']} is {entry['loadStatus']}"
        return "loaded"

    def runs(self) -> list[dict[str, Any]]:
        """The instance's runs, newest first (runId, jobName, status, creationTime,
        startTime, endTime in epoch seconds, tags as a list of key and value)."""
        answer = self.graphql(RUNS_QUERY)["runsOrError"]
        if answer["__typename"] != "Runs":
            raise WebserverError(f"cannot list runs: {answer.get('message')}")
        results: list[dict[str, Any]] = answer["results"]
        return results

    def materializations(self, asset: str) -> list[dict[str, Any]]:
        """The asset's latest materializations, newest first: runId, timestamp (ms) and
        ``metadata`` (label to text, int or float)."""
        answer = self.graphql(MATERIALIZATIONS_QUERY, {"path": [asset]})["assetOrError"]
        if answer["__typename"] != "Asset":
            return []
        found: list[dict[str, Any]] = []
        for event in answer["assetMaterializations"]:
            metadata = {
                e["label"]: next(
                    (e[k] for k in ("text", "intValue", "floatValue") if e.get(k) is not None),
                    None,
                )
                for e in event["metadataEntries"]
            }
            found.append(
                {"runId": event["runId"], "timestamp": event["timestamp"], "metadata": metadata}
            )
        return found

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        """The run's final status (SUCCESS, FAILURE or CANCELED), or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        status = "unknown"
        while time.monotonic() < deadline:
            status = next((r["status"] for r in self.runs() if r["runId"] == run_id), "unknown")
            if status in TERMINAL_STATUSES:
                return status
            time.sleep(0.5)
        raise WebserverError(
            f"run {run_id} was still {status} after {timeout:.0f} s:\n{self.log_tail()}"
        )

    def run_errors(self, run_id: str) -> list[str]:
        """The ERROR messages and step failures a run logged, to explain a failed run."""
        answer = self.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]
        messages: list[str] = []
        for event in answer.get("events", []):
            if event.get("error"):
                messages.append(str(event["error"]["message"]))
            elif event.get("level") == "ERROR":
                messages.append(str(event.get("message")))
        return messages

    def run_messages(self, run_id: str) -> list[str]:
        """Every message a run logged (its own and Dagster's), in order."""
        answer = self.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]
        return [str(e["message"]) for e in answer.get("events", []) if e.get("message")]

    def checks(self, asset: str) -> dict[str, dict[str, Any]]:
        """Each check of ``asset`` by name: status (SUCCEEDED, FAILED, ...), runId, evaluation."""
        [node] = self.graphql(CHECKS_QUERY, {"path": [asset]})["assetNodes"]
        answer = node["assetChecksOrError"]
        if answer["__typename"] != "AssetChecks":
            raise WebserverError(f"cannot list the checks of {asset}: {answer}")
        return {
            c["name"]: c["executionForLatestMaterialization"] or {"status": "NONE"}
            for c in answer["checks"]
        }

    def sensor_state(self, sensor: str) -> dict[str, Any]:
        """The sensor's state: id, status (RUNNING, STOPPED), recent ticks newest first."""
        selector = {
            "repositoryLocationName": DEFINITIONS_MODULE,
            "repositoryName": "__repository__",
            "sensorName": sensor,
        }
        answer = self.graphql(SENSOR_QUERY, {"selector": selector})["sensorOrError"]
        if answer["__typename"] != "Sensor":
            raise WebserverError(f"cannot read the sensor {sensor}: {answer}")
        state: dict[str, Any] = answer["sensorState"]
        return state

    def stop_sensor(self, sensor: str) -> None:
        """Turn the sensor off, as its toggle in the UI does."""
        answer = self.graphql(STOP_SENSOR_MUTATION, {"id": self.sensor_state(sensor)["id"]})
        result = answer["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise WebserverError(f"cannot stop the sensor {sensor}: {result}")

    def stop(self, grace_seconds: float = 10.0) -> None:
        """End the server's process group (see stop_group)."""
        self.client.close()
        stop_group(self.process, grace_seconds)


def stop_group(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    """End a process and its group: SIGTERM, then SIGKILL after ``grace_seconds``."""
    if process.poll() is not None:
        return
    group = os.getpgid(process.pid)
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    # The code server and run workers share the group and may outlive the server.
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=grace_seconds)


@contextmanager
def dagster_daemon(home: Path, env: Mapping[str, str], workdir: Path) -> Iterator[Path]:
    """`dagster-daemon run` over ``home`` (sensors, schedules); yields its log file.

    Started in its own process group and stopped, group and all, afterwards.
    """
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [DAEMON, "run", "-m", DEFINITIONS_MODULE, "-d", str(workdir)],
            cwd=workdir,
            env={**env, "DAGSTER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log_path
    finally:
        stop_group(process)


@contextmanager
def dagster_webserver(
    home: Path, env: Mapping[str, str], workdir: Path, *, ready_timeout: float = 90.0
) -> Iterator[Webserver]:
    """Serve the code location on a free port over ``home``; stopped (whole group) after.

    ``workdir`` is the server's working directory: keep it outside the project so a
    developer's .env there cannot change what the test runs against.
    """
    port = free_port()
    log_path = workdir / "webserver.log"
    child_env = {**env, "DAGSTER_HOME": str(home)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                WEBSERVER,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-m",
                DEFINITIONS_MODULE,
                "-d",
                str(workdir),
            ],
            cwd=workdir,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    server = Webserver(url, process, log_path, httpx.Client(base_url=url, timeout=15.0))
    try:
        server.wait_until_ready(ready_timeout)
        yield server
    finally:
        server.stop()
