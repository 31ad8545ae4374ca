#!/usr/bin/env bash
# Megatron shards (any TP/PP, e.g. a trained actor checkpoint) -> HF safetensors.
#   bash examples/ckpt/mcore2hf.sh MCORE_DIR HF_OUT [extra convert_ckpt args...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 MCORE_DIR HF_OUT [--overwrite] [--max-shard-size-mb N]" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
load_dir=$1 save_dir=$2
shift 2
exec "$python" "$root/cli/convert_ckpt.py" mcore2hf --load-dir "$load_dir" --save-dir "$save_dir" "$@"
