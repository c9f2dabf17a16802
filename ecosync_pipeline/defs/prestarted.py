"""A run worker started before its run: ``dagster api execute_run`` with the imports done.

``PrestartedRunLauncher`` (defs/launcher.py) keeps a few of these waiting. Each imports
Dagster's command line and the code location's module, then waits on stdin for one line:
the serialized ``ExecuteRunArgs`` of the run to execute. It then runs exactly what
``dagster api execute_run <args>`` runs, in this process, and exits with its code. If a
module it imported has changed on disk since (a deploy), it replaces itself with a fresh
``dagster api execute_run`` first, so a run never executes code older than its start.
At end of input (the launcher went away before handing it a run) it exits at once, 0.

    python -m ecosync_pipeline.defs.prestarted <module> <working directory>
"""

from __future__ import annotations

import importlib
import os
import sys
import time


def preload(module: str, working_directory: str) -> None:
    """Import the code location's module, as the run will; a failure is left to the run.

    The run imports the module again from its origin and reports whatever goes wrong
    there, with the code location's own error, in its event log.
    """
    if working_directory and working_directory not in sys.path:
        sys.path.insert(0, working_directory)
    if module:
        try:
            importlib.import_module(module)
        except Exception as exc:  # reported by the run itself; see the docstring
            print(f"prestarted run worker: importing {module} failed ({exc})", file=sys.stderr)


def changed_since(moment: float) -> str | None:
    """A loaded module's file changed on disk after ``moment`` (installed packages aside)."""
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or path.startswith(installed):
            continue
        try:
            if os.stat(path).st_mtime > moment:
                return str(path)
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    from dagster._cli import main as dagster_main  # the `dagster` command's own entry point

    imported_at = time.time()
    preload(argv[0] if argv else "", argv[1] if len(argv) > 1 else "")
    line = sys.stdin.readline().strip()
    if not line:
        return 0
    command = ["dagster", "api", "execute_run", line]
    changed = changed_since(imported_at)
    if changed is not None:
        # The code changed since this process imported it (a deploy): the run gets the
        # new code, in this same process (its pid is the run's recorded worker).
        print(f"prestarted run worker: {changed} changed; importing afresh", file=sys.stderr)
        os.execv(sys.executable, [sys.executable, "-m", *command])
    sys.argv = command
    try:
        dagster_main()
    except SystemExit as done:  # click ends the command this way, with its exit code
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
