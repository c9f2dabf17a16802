"""`ecosync simulator serve` in its own process answers curl-like GETs of the demo stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecosync_pipeline.asgi import free_port
from ecosync_pipeline.lab.simulator import ORDERS_PATH, demo_token

ROOT = Path(__file__).resolve().parents[2]
NATUR_TOKEN = "N" * 40 + "4" * 40


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The demo stores served by the CLI in a subprocess; NATUR's token set, PURNA's not."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOSYNC_TOKEN_")}
    env["ECOSYNC_TOKEN_NATUR"] = NATUR_TOKEN
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [
        sys.executable,
        "-c",
        "from ecosync_pipeline.cli import main; main()",
        "simulator",
        "serve",
        "--port",
        str(port),
        "--stores-file",
        str(ROOT / "data" / "stores.yaml"),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_sim/stores", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"`ecosync simulator serve` did not come up on {url}:\n{output}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def test_served_natur_last_page_holds_id_181601_and_past_it_is_empty(served: str) -> None:
    headers = {"Authorization": f"Bearer {NATUR_TOKEN}", "Accept": "application/json"}
    with httpx.Client(base_url=served, headers=headers, timeout=5) as client:
        first = client.get(f"/NATUR{ORDERS_PATH}", params={"page": 1, "per_page": 20})
        assert first.status_code == 200
        last_page = first.json()["meta"]["last_page"]
        assert 8_700 < last_page < 9_081  # 3% gaps: fewer pages than id / 20
        last = client.get(f"/NATUR{ORDERS_PATH}", params={"page": last_page, "per_page": 20})
        assert last.status_code == 200 and last.json()["data"][-1]["id"] == 181_601
        past = client.get(f"/NATUR{ORDERS_PATH}", params={"page": 9_081, "per_page": 20})
        assert past.status_code == 200 and past.json()["data"] == []


def test_served_store_without_token_variable_accepts_the_demo_token(served: str) -> None:
    url = f"{served}/PURNA{ORDERS_PATH}"
    ok = httpx.get(
        url, params={"page": 1500}, headers={"Authorization": f"Bearer {demo_token('PURNA', 0)}"}
    )
    assert ok.status_code == 200 and len(ok.json()["data"]) == 20
    refused = httpx.get(url, headers={"Authorization": f"Bearer {NATUR_TOKEN}"})
    assert refused.status_code == 403
