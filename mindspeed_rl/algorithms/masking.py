"""Reductions over the valid tokens of ``[N, T]`` tensors (``mask_NT`` 1 on response tokens)."""

from __future__ import annotations

import torch


def masked_mean(values_NT: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
    """Mean of ``values_NT`` over the valid tokens; 0 when there are none."""
    mask_NT = mask_NT.to(values_NT.dtype)
    return (values_NT * mask_NT).sum() / mask_NT.sum().clamp(min=1.0)
