"""Qwen2 / Qwen2.5 family (``Qwen2ForCausalLM``)."""

from mindspeed_rl.models.family import register_family
from mindspeed_rl.models.qwen2.model import Qwen2Family

QWEN2 = register_family(Qwen2Family())

__all__ = ["QWEN2", "Qwen2Family"]
