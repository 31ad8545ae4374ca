"""Llama family: Llama 2/3, SmolLM2 and other ``LlamaForCausalLM`` checkpoints."""

from mindspeed_rl.models.llama.model import LlamaFamily

__all__ = ["LlamaFamily"]
