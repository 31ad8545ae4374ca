#!/usr/bin/env bash
# Creates bench/.venv-trl: the environment of the TRL side of bench/grpo_vs_trl.py.
#
# TRL lives only here, never in .venv nor in setup.py: it is the baseline we measure against,
# not a dependency. torch is the same CPU wheel as in .venv (2.13.0), installed first and held
# by a constraint so that resolving trl cannot swap in a CUDA build. Our reward scorers are
# imported from the source tree (PYTHONPATH), so only their one third-party need, math-verify,
# is installed here.
#   bash bench/setup_trl_env.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/bench/.venv-trl"
python="${PYTHON:-python3}"

TORCH_VERSION=2.13.0
TRL_VERSION=1.16.0           # the version bench/grpo_vs_trl.py was written and tried against
TRANSFORMERS_VERSION=5.19.0  # the one in .venv, so both sides run the same model code

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q "torch==$TORCH_VERSION"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" >"$constraints"
"$py" -m pip install -q -c "$constraints" \
  "trl==$TRL_VERSION" "transformers==$TRANSFORMERS_VERSION" \
  "math-verify[antlr4_9_3]>=0.7"

TORCH_VERSION="$TORCH_VERSION" "$py" - <<'EOF'
import os, torch, trl, transformers, math_verify  # noqa: F401
# The resolver must not have swapped torch (the constraint above holds it).
want = os.environ["TORCH_VERSION"]
assert torch.__version__.split("+")[0] == want, f"torch {torch.__version__}, expected {want}"
print(f"setup_trl_env: trl {trl.__version__}, transformers {transformers.__version__}, "
      f"torch {torch.__version__} in bench/.venv-trl")
EOF
