#!/usr/bin/env bash
# Create ./.venv and install dynrec into it, torch (CPU build) first so pip never pulls CUDA.
# Idempotent: a second run with the same pyproject.toml skips pip entirely.
#   PYTHON=python3.11            interpreter for the venv (default: python3)
#   DYNREC_TORCH_INDEX=URL       index for the CPU torch wheel where plain PyPI would give CUDA
#                                (e.g. PyTorch's own CPU index); unset here, where pip finds it on disk
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.dynrec-install-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

echo "dynrec: installing into .venv (torch CPU first) ..."
torch_args=()
if [ -n "${DYNREC_TORCH_INDEX:-}" ]; then
  torch_args=(--index-url "$DYNREC_TORCH_INDEX")
fi
.venv/bin/python -m pip install --quiet "torch==2.13.0" "${torch_args[@]}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
