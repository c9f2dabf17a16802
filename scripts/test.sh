#!/usr/bin/env bash
# The test command: installs everything, starts the services, lints, type-checks, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k locator, --faults-large).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
bash scripts/browser.sh
echo "==> ruff"
.venv/bin/ruff check ecosync_pipeline ecosync_pipeline_tests
.venv/bin/ruff format --check ecosync_pipeline ecosync_pipeline_tests
echo "==> import-linter (the house's import rules, setup.cfg)"
.venv/bin/lint-imports
echo "==> mypy (core, strict)"
.venv/bin/mypy
echo "==> pytest"
# pytest's own exit code is the script's: 5 (nothing collected) fails CI too.
exec .venv/bin/python -m pytest "$@"
