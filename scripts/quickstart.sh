#!/usr/bin/env bash
# README command 1: install into ./.venv, then run the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dynrec quickstart "$@"
