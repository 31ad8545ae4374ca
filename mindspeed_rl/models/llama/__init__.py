"""Llama family: Llama 2/3, SmolLM2 and other ``LlamaForCausalLM`` checkpoints."""

from mindspeed_rl.models.family import register_family
from mindspeed_rl.models.llama.model import LlamaFamily

LLAMA = register_family(LlamaFamily())

__all__ = ["LLAMA", "LlamaFamily"]
