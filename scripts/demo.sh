#!/usr/bin/env bash
# The main command: installs everything, then plays the demo on the embedded defaults.
# Extra arguments go to `ecosync demo` (e.g. --small).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh || echo "(continuing: the demo shows the sync running without Redis)"
exec .venv/bin/ecosync demo "$@"
