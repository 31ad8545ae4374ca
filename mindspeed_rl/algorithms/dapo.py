"""DAPO's two data-side tricks: dynamic sampling and overlong reward shaping.

Dynamic sampling drops the prompts whose G responses all got the same reward: their
group-relative advantages are all 0, so they cost a training step and teach nothing. The trainer
keeps sampling until it has enough informative groups.

Overlong reward shaping adds a soft, length-aware penalty so that a response cut off at the
length limit is not judged only by its (missing) answer, with the penalty ramping up over the
last ``buffer_length`` tokens before the limit.
"""

from __future__ import annotations

import torch


def informative_groups(rewards_N: torch.Tensor, group_size: int) -> torch.Tensor:
    """Indices of the groups (prompts) whose rewards are not all equal, ascending, int64 [K].

    ``rewards_N`` is flat [B*G] with each group contiguous. Equality is exact: rule rewards
    take a few discrete values, and a group that differs only by float noise is not a signal.
    """
    if rewards_N.dim() != 1 or group_size < 1 or rewards_N.numel() % group_size:
        raise ValueError(
            f"rewards must be a flat [B*G] tensor with group_size {group_size} dividing its "
            f"length, got shape {tuple(rewards_N.shape)}"
        )
    rewards_BG = rewards_N.view(-1, group_size)
    varied_B = rewards_BG.amax(dim=1) != rewards_BG.amin(dim=1)
    return varied_B.nonzero().flatten()


def group_sample_indices(group_indices_K: torch.Tensor, group_size: int) -> torch.Tensor:
    """The flat sample indices [K*G] of the given groups, in order: selects a filtered batch
    from any per-sample column (``column_N[group_sample_indices(keep, G)]``)."""
    offsets_G = torch.arange(group_size, device=group_indices_K.device)
    return (group_indices_K.unsqueeze(-1) * group_size + offsets_G).flatten()


def overlong_penalty(
    lengths_N: torch.Tensor, max_length: int, buffer_length: int, penalty_factor: float = 1.0
) -> torch.Tensor:
    """DAPO's soft overlong punishment per response (float [N], <= 0), added to the reward.

    With ``start = max_length - buffer_length``: 0 for ``length <= start``; then linear,
    ``-penalty_factor * (length - start) / buffer_length``, reaching -penalty_factor at
    ``max_length``; -penalty_factor beyond it.
    """
    if max_length < 1:
        raise ValueError(f"overlong max_length must be >= 1, got {max_length}")
    if not 1 <= buffer_length <= max_length:
        raise ValueError(
            f"overlong buffer_length must be in [1, max_length={max_length}], got {buffer_length}"
        )
    if penalty_factor < 0:
        raise ValueError(f"overlong penalty_factor must be >= 0, got {penalty_factor}")
    excess_N = lengths_N.float() - (max_length - buffer_length)
    # clamp(0, 1) gives all three pieces: 0 below the buffer, linear in it, full beyond max.
    return -penalty_factor * (excess_N / buffer_length).clamp(0.0, 1.0)
