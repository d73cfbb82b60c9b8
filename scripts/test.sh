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
export RAY_AUTH_MODE=disabled
exec .venv/bin/python -m pytest -q "$@"
