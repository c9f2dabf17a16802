#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Playwright (no browser download).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing Debian's chromium for the browser test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/ecosync-apt.log 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q chromium >/tmp/ecosync-apt.log 2>&1; } \
    || { echo "could not install chromium (see /tmp/ecosync-apt.log)" >&2; exit 3; }
else
  echo "Chromium is missing: install Debian's chromium package (sudo apt-get install" \
    "chromium) so the browser test can run." >&2
  exit 3
fi
