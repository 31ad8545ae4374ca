"""Per-token estimators of KL(policy || reference) from the two models' token log-probs.

With samples drawn from the policy and ``r = ref / policy`` the probability ratio of the
sampled token (Schulman, "Approximating KL Divergence", 2020):

    k1 = log(policy / ref)                 unbiased, high variance, can be negative
    k2 = 0.5 * log(policy / ref) ** 2      biased, low variance, >= 0
    k3 = r - log r - 1                     unbiased, low variance, >= 0  ("low_var_kl" in verl)

All take log-probs of shape [N, T] and return per-token values of the same shape; masking and
averaging are the caller's (see ``policy_loss.aggregate``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

K3_LOG_RATIO_CLAMP = 20.0
"""|ref - logp| is clamped to this before exp(): one token the policy has pushed far from the
reference must not overflow to inf and poison the batch."""

K3_CLAMP = 10.0
"""k3 per token is clamped to [-K3_CLAMP, K3_CLAMP], as verl does, to bound its gradient."""


def kl_k1(logprobs_NT: torch.Tensor, ref_logprobs_NT: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref_logp."""
    return logprobs_NT - ref_logprobs_NT


def kl_k2(logprobs_NT: torch.Tensor, ref_logprobs_NT: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (logp - ref_logp) ** 2."""
    return 0.5 * (logprobs_NT - ref_logprobs_NT).square()


def kl_k3(logprobs_NT: torch.Tensor, ref_logprobs_NT: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1, clamped to [-10, 10]."""
    log_ratio_NT = (ref_logprobs_NT - logprobs_NT).clamp(-K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)
    return (log_ratio_NT.exp() - log_ratio_NT - 1.0).clamp(-K3_CLAMP, K3_CLAMP)


KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

KL_ESTIMATORS: dict[str, KLEstimator] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
"""Estimators by the name a config gives (``GRPOLossConfig.kl_estimator``)."""
