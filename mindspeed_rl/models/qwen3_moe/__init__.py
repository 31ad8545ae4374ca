"""Qwen3-MoE family (``Qwen3MoeForCausalLM``)."""

from mindspeed_rl.models.qwen3_moe.model import Qwen3MoeFamily

__all__ = ["Qwen3MoeFamily"]
