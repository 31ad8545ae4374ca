"""Group-relative advantages: GRPO's (r - mean) / (std + eps) and Dr.GRPO's r - mean.

Rewards arrive flat, ``rewards_N`` with ``N = B * G``: the G responses of a prompt are
contiguous (``rewards_N[b * G : (b + 1) * G]``), the order the rollout engine returns them in.

The standard deviation is the unbiased one (Bessel's correction, divisor G - 1), what
``torch.std`` computes and what verl and TRL use: keeping it makes advantage magnitudes, and so
learning-rate and clip settings, carry over from their published runs. The choice only
rescales each group by sqrt((G - 1) / G), which matters little at G = 8 or 16 but is not nothing
at G = 2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

STD_EPS = 1e-6
"""Added to the group std so a group whose rewards are all equal gets advantage 0, not NaN."""


def _rewards_BG(rewards_N: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards_N.dim() != 1:
        raise ValueError(f"rewards must be a flat [B*G] tensor, got shape {tuple(rewards_N.shape)}")
    if group_size < 1 or rewards_N.numel() % group_size:
        raise ValueError(
            f"group_size {group_size} must be >= 1 and divide the number of rewards "
            f"({rewards_N.numel()})"
        )
    # Integer (0/1) rewards must not turn the mean into integer division.
    if not rewards_N.is_floating_point():
        rewards_N = rewards_N.float()
    return rewards_N.view(-1, group_size)


def grpo_advantages(rewards_N: torch.Tensor, group_size: int, eps: float = STD_EPS) -> torch.Tensor:
    """Per-sample GRPO advantage: (r - group mean) / (unbiased group std + eps), shape [N].

    A group whose rewards are all equal (all right or all wrong) gets 0 for every sample: it
    carries no learning signal. Needs ``group_size >= 2``; the std of one sample is undefined.
    """
    if group_size < 2:
        raise ValueError(
            f"group_size must be >= 2 for std-normalised GRPO advantages, got {group_size}"
        )
    rewards_BG = _rewards_BG(rewards_N, group_size)
    mean_B1 = rewards_BG.mean(dim=1, keepdim=True)
    std_B1 = rewards_BG.std(dim=1, keepdim=True, unbiased=True)
    return ((rewards_BG - mean_B1) / (std_B1 + eps)).view(-1)


def mean_centred_advantages(rewards_N: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per-sample Dr.GRPO advantage: r - group mean, shape [N].

    Dividing by the group std up-weights prompts that are nearly always or nearly never solved
    (small std); Dr.GRPO drops the division to remove that difficulty bias.
    """
    rewards_BG = _rewards_BG(rewards_N, group_size)
    return (rewards_BG - rewards_BG.mean(dim=1, keepdim=True)).view(-1)


AdvantageEstimator = Callable[[torch.Tensor, int], torch.Tensor]
"""``estimator(rewards_N, group_size) -> advantages_N``."""

ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": grpo_advantages,
    "drgrpo": mean_centred_advantages,
}
"""Estimators by the name a config gives (``AlgorithmConfig.advantage``)."""

MIN_GROUP_SIZE: dict[str, int] = {"grpo": 2, "drgrpo": 1}
"""The smallest group each estimator is defined for (the std of one sample is not)."""


def broadcast_to_tokens(advantages_N: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
    """Each sample's advantage on each of its response tokens, 0 on padding: shape [N, T].

    GRPO gives every token of a response its sequence's (outcome) advantage.
    """
    if mask_NT.dim() != 2 or advantages_N.shape != mask_NT.shape[:1]:
        raise ValueError(
            f"advantages {tuple(advantages_N.shape)} and mask {tuple(mask_NT.shape)} must be "
            "[N] and [N, T]"
        )
    return advantages_N.unsqueeze(-1) * mask_NT.to(advantages_N.dtype)


def compute_token_advantages(
    rewards_N: torch.Tensor,
    mask_NT: torch.Tensor,
    group_size: int,
    norm_by_std: bool = True,
    eps: float = STD_EPS,
) -> torch.Tensor:
    """Group-relative advantages broadcast over response tokens, shape [N, T].

    ``norm_by_std`` True is GRPO, False is Dr.GRPO (mean-centred only).
    """
    if norm_by_std:
        advantages_N = grpo_advantages(rewards_N, group_size, eps)
    else:
        advantages_N = mean_centred_advantages(rewards_N, group_size)
    return broadcast_to_tokens(advantages_N, mask_NT)
