#!/usr/bin/env bash
# HF checkpoint -> Megatron TP/PP shards.
#   bash examples/ckpt/hf2mcore.sh HF_DIR SAVE_DIR [TP] [PP] [extra convert_ckpt args...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 HF_DIR SAVE_DIR [TP] [PP] [--params-dtype bf16|fp16|fp32] [--overwrite]" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
hf_dir=$1 save_dir=$2 tp=${3:-1} pp=${4:-1}
shift $(( $# < 4 ? $# : 4 ))
exec "$python" "$root/cli/convert_ckpt.py" hf2mcore --load-dir "$hf_dir" --save-dir "$save_dir" \
  --tp "$tp" --pp "$pp" "$@"
