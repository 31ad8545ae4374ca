#!/usr/bin/env bash
# Preprocess a dataset into R1 prompts: bash examples/data/preprocess_data.sh NAME [key=value ...]
#   NAME: deepscaler | math | gsm8k | countdown (configs/datasets/NAME.yaml)
# Countdown needs no download: its raw puzzles are generated here when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if [ $# -lt 1 ]; then
    echo "usage: bash examples/data/preprocess_data.sh NAME [key=value ...]" >&2
    exit 2
fi
name="$1"
shift
python="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then
    python=.venv/bin/python
fi
if [ "$name" = countdown ] && [ ! -f data/raw/countdown/train.jsonl ]; then
    "$python" cli/generate_countdown.py --rows 20000 --seed 0 --out data/raw/countdown/train.jsonl
fi
exec "$python" cli/preprocess_data.py "$name" "$@"
