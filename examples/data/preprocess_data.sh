#!/usr/bin/env bash
# Preprocess a dataset into R1 prompts: bash examples/data/preprocess_data.sh NAME [key=value ...]
#   NAME: deepscaler | math | gsm8k | math500 | aime24 | gpqa_diamond | countdown | arithmetic
#         (configs/datasets/NAME.yaml)
# Countdown and arithmetic need no download: their raw rows are generated here when missing;
# arithmetic's held-out split is preprocessed too (data/arithmetic/test).
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
    "$python" cli/generate_data.py countdown --rows 20000 --seed 0 --out data/raw/countdown/train.jsonl
fi
if [ "$name" = arithmetic ]; then
    [ -f data/raw/arithmetic/test.jsonl ] || "$python" cli/generate_data.py arithmetic --seed 0 --out-dir data/raw/arithmetic
    "$python" cli/preprocess_data.py arithmetic input=data/raw/arithmetic/test.jsonl \
        output_prefix=data/arithmetic/test "$@"
fi
exec "$python" cli/preprocess_data.py "$name" "$@"
