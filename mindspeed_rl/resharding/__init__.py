"""Megatron training layout (any TP/PP) -> inference layout, in memory, in bounded buckets."""

from mindspeed_rl.resharding.megatron_to_hf import MegatronToHF

__all__ = ["MegatronToHF"]
