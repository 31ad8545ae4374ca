"""Qwen2 / Qwen2.5 family (``Qwen2ForCausalLM``)."""

from mindspeed_rl.models.qwen2.model import Qwen2Family

__all__ = ["Qwen2Family"]
