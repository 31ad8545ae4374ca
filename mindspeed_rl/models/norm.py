"""RMSNorm for megatron-core's layer spec that works with sequence parallelism.

megatron-core's local spec wraps torch's norm and refuses ``sequence_parallel`` (its fused
norms need apex or Transformer Engine). Under sequence parallelism each tensor-parallel rank
normalises its own slice of the sequence, so each rank's gradient of the shared weight covers
only that slice: the weight is marked ``sequence_parallel`` and megatron-core's
``finalize_model_grads`` sums it over the tensor-parallel group, as it does for its own fused
norms. The arithmetic is torch's ``rms_norm``: the same numbers as the module it replaces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer import TransformerConfig


class RMSNorm(torch.nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension; the constructor takes
    what megatron-core's spec passes to a norm."""

    def __init__(
        self,
        config: TransformerConfig,
        hidden_size: int,
        eps: float = 1e-5,
        persist_layer_norm: bool = False,
        zero_centered_gamma: bool = False,
        normalization: str = "RMSNorm",
        sequence_split: bool = True,
    ):
        super().__init__()
        if config.normalization != "RMSNorm" or config.layernorm_zero_centered_gamma:
            raise ValueError("mindspeed_rl's norm is a plain RMSNorm")
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype))
        # Norms over the hidden states see a slice of the sequence under sequence parallelism;
        # the q/k norms (sequence_split=False) see whole sequences and their own heads.
        self.weight.sequence_parallel = bool(config.sequence_parallel and sequence_split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
