"""A code location of one job for the run launcher's tests: it records the process it ran
in, then waits for a file to appear (or a few seconds) before it succeeds."""

# No `from __future__ import annotations`: Dagster reads the op's config annotation.
import os
import time
from pathlib import Path

from dagster import Config, Definitions, OpExecutionContext, in_process_executor, job, op


class WorkConfig(Config):
    folder: str
    """Where the op writes <run id>.pid, and looks for <run id>.go before finishing."""
    wait_seconds: float = 0.0


@op
def work(context: OpExecutionContext, config: WorkConfig) -> None:
    folder = Path(config.folder)
    (folder / f"{context.run_id}.pid").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + config.wait_seconds
    while time.monotonic() < deadline and not (folder / f"{context.run_id}.go").exists():
        time.sleep(0.1)


@job(executor_def=in_process_executor)
def record_process() -> None:
    work()


defs = Definitions(jobs=[record_process])
