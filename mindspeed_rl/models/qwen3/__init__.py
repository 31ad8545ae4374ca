"""Qwen3 dense family (``Qwen3ForCausalLM``)."""

from mindspeed_rl.models.qwen3.model import Qwen3Family

__all__ = ["Qwen3Family"]
