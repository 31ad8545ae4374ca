"""GRPO / DAPO / Dr.GRPO as pure tensor functions: advantages, KL estimators, policy loss.

Nothing here knows about devices, processes or Megatron; every function is unit-tested on
small hand-computed tensors.
"""

from mindspeed_rl.algorithms.advantages import (
    broadcast_to_tokens,
    compute_token_advantages,
    grpo_advantages,
    mean_centred_advantages,
)
from mindspeed_rl.algorithms.dapo import group_sample_indices, informative_groups, overlong_penalty
from mindspeed_rl.algorithms.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from mindspeed_rl.algorithms.policy_loss import (
    AGGREGATORS,
    GRPOLossConfig,
    aggregate,
    clipped_policy_loss,
    grpo_loss,
    masked_mean,
)

__all__ = [
    "AGGREGATORS",
    "GRPOLossConfig",
    "KL_ESTIMATORS",
    "aggregate",
    "broadcast_to_tokens",
    "clipped_policy_loss",
    "compute_token_advantages",
    "group_sample_indices",
    "grpo_advantages",
    "grpo_loss",
    "informative_groups",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "masked_mean",
    "mean_centred_advantages",
    "overlong_penalty",
]
