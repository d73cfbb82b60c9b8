#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install into ./.venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_AUTH_MODE=disabled
exec .venv/bin/python -m pytest -q "$@"
