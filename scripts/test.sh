#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs lint and the full test suite.
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install.sh cpu
. .venv/bin/activate
ruff check .
ruff format --check .
python tools/prepare_smollm2.py
python -m pytest -q "$@"
