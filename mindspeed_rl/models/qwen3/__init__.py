"""Qwen3 dense family (``Qwen3ForCausalLM``)."""

from mindspeed_rl.models.family import register_family
from mindspeed_rl.models.qwen3.model import Qwen3Family

QWEN3 = register_family(Qwen3Family())

__all__ = ["QWEN3", "Qwen3Family"]
