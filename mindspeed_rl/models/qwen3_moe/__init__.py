"""Qwen3-MoE family (``Qwen3MoeForCausalLM``)."""

from mindspeed_rl.models.family import register_family
from mindspeed_rl.models.qwen3_moe.model import Qwen3MoeFamily

QWEN3_MOE = register_family(Qwen3MoeFamily())

__all__ = ["QWEN3_MOE", "Qwen3MoeFamily"]
