#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install into ./.venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the Redis state-store tests start their own redis-server on loopback; install it when missing
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
  else
    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server)" >&2
    exit 1
  fi
fi
# the docs pages' browser tests drive Debian's headless Chromium through Playwright for Python (which
# never downloads a browser of its own here); only where Chromium cannot be installed do they skip
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
      || echo "chromium could not be installed: the browser tests will skip" >&2
  else
    echo "chromium is missing (Debian/Ubuntu: sudo apt-get install chromium): the browser tests will skip" >&2
  fi
fi
.venv/bin/python -c "import playwright" 2>/dev/null || .venv/bin/python -m pip install --quiet "playwright==1.63.0"
export RAY_AUTH_MODE=disabled
exec .venv/bin/python -m pytest -q "$@"
