"""`ecosync sync` over many stores: each independent, failures tabled, exit 1; bodies capped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import (
    CliWorld,
    cli_world_for,
    dialect,
    leaked,
    make_token,
)

MB = 1024 * 1024


def test_failing_stores_are_tabled_with_their_reason_and_the_others_still_sync(
    cli_world: CliWorld, caplog: pytest.LogCaptureFixture, case_row: Callable[..., None]
) -> None:
    refused = AdversarialStore("AAUTH", make_token(), [1, 2])
    broken = AdversarialStore("BBROKEN", make_token(), [1, 2], odd={1: {"id": "one"}})
    good = AdversarialStore("CGOOD", make_token(), list(range(1, 31)))
    cli_world.configure(refused, broken, good)
    cli_world.env["ECOSYNC_TOKEN_AAUTH"] = make_token()  # not the token the server knows
    result = cli_world.sync()
    assert result.exit_code == 1
    assert set(cli_world.stored("CGOOD")) == set(range(1, 31))
    table = result.stderr.split("the others were synced:\n", 1)[1].splitlines()[2:]
    failures = {line.split()[0]: line for line in table if line}
    assert set(failures) == {"AAUTH", "BBROKEN"}, result.stderr
    assert "ApiAuthError" in failures["AAUTH"] and "ECOSYNC_TOKEN_AAUTH" in failures["AAUTH"]
    assert "MalformedPage" in failures["BBROKEN"] and "page 1" in failures["BBROKEN"]
    assert "2 of 3 stores failed" in result.stderr
    tokens = (refused.token, broken.token, good.token, cli_world.env["ECOSYNC_TOKEN_AAUTH"])
    shown = max(leaked(result.output + caplog.text, t) for t in tokens)
    assert shown == 0
    # The next good run: the token fixed and the server mended, every store syncs.
    cli_world.env["ECOSYNC_TOKEN_AAUTH"] = refused.token
    broken.odd = {}
    again = cli_world.sync()
    assert again.exit_code == 0, again.output
    lost = sum(
        len(set(s.ids) - set(cli_world.stored(s.identifier))) for s in (refused, broken, good)
    )
    assert lost == 0
    case_row(
        f"ecosync sync, 2 of 3 stores failing ({dialect(cli_world.database_url)})",
        missing=lost,
        blocked=False,
        leaked=shown,
        peak_mb=None,
        message=" ".join(failures["AAUTH"].split()[1:]),
    )


def test_sync_command_has_a_default_time_budget(cli_world: CliWorld) -> None:
    result = cli_world.sync("--help")
    assert "--budget-seconds" in result.output and "default: 600" in result.output


PEAK = (
    "import resource, sys\n"
    "from ecosync_pipeline.cli import main\n"
    "try:\n"
    "    main(['sync'])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "print(f'PEAK_MB {peak:.1f}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def peak_sync(world: CliWorld) -> tuple[int, str, float]:
    """``ecosync sync`` in a process of its own: exit code, stderr, peak RSS in MB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    peak = float(done.stderr.rsplit("PEAK_MB", 1)[1])
    return done.returncode, done.stderr, peak


def test_a_40_mb_order_is_refused_naming_store_and_page_without_reading_it_whole(
    adversarial: AdversarialServer,
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    case_row: Callable[..., None],
) -> None:
    world = cli_world_for(adversarial, postgres_url, redis_url, tmp_path)
    token = make_token()
    world.configure(AdversarialStore("HUGE", token, list(range(1, 11))))
    code, _, baseline = peak_sync(world)
    assert code == 0
    for declared in (False, True):
        huge = AdversarialStore(
            "HUGE", token, [11], huge_name_bytes=40 * MB, declare_length=declared
        )
        world.configure(huge)
        code, stderr, peak = peak_sync(world)
        assert code == 1
        line = next(x for x in stderr.splitlines() if x.startswith("HUGE"))
        assert "ResponseTooLarge" in line and "store HUGE: page 1" in line, stderr
        assert "max_page_bytes" in line
        # 4 MB read at most: nothing near the 40 MB body (or the 251 MB it used to take).
        assert peak < baseline + 20, (peak, baseline)
        shown = leaked(stderr, token)
        assert shown == 0
        case_row(
            f"one 40 MB order ({'Content-Length' if declared else 'streamed'}; a normal run "
            f"peaks at {baseline:.0f} MB)",
            missing=None,
            blocked=None,
            leaked=shown,
            peak_mb=round(peak, 1),
            message=" ".join(line.split()[1:]),
        )
    # The next good run: the server serves the order at a normal size; nothing is missing.
    world.configure(AdversarialStore("HUGE", token, list(range(1, 13))))
    code, _, _ = peak_sync(world)
    assert code == 0
    lost = len(set(range(1, 13)) - set(world.stored("HUGE")))
    assert lost == 0
    case_row(
        "one 40 MB order: the next good run",
        missing=lost,
        blocked=False,
        leaked=None,
        peak_mb=None,
        message="orders 1..12 stored",
    )
