"""Corrections for the gap between the engine that sampled a response and the policy trained on
it: truncated importance sampling (TIS) and masked importance sampling (MIS).

The engine (vLLM: its own kernels, bf16, on MoE its own routing) samples token t with
probability ``pi_rollout``; the loss treats it as sampled by ``pi_old``, the training engine's
policy at sampling time. The per-token ratio ``w_t = pi_old / pi_rollout`` is what an unbiased
estimator would weigh the token by. Levels:

    token      w_t for each token
    sequence   prod_t w_t, one weight for every token of a response
    geometric  (prod_t w_t) ** (1 / T), the per-token geometric mean: a response-level
               weight that does not explode with length (for masking long responses)

Modes (``C`` the cap, > 1):

    tis   weight = min(w, C)                       (Yao et al., "Your efficient RL framework
                                                   secretly brings you off-policy RL", 2025)
    mis   weight = 1 if 1/C <= w <= C else 0       (drop what the engine sampled too
                                                   differently; the rest is used as is)

The weights multiply the per-token policy-gradient term and carry no gradient. A token
weighted 0 stays in the loss's normaliser: a batch that mismatches more takes a smaller step,
as a clipped token does. All tensors are [N, T] with ``mask_NT`` 1 on response tokens.
"""

from __future__ import annotations

import math

import torch

from mindspeed_rl.algorithms.masking import masked_mean

MODES = ("none", "tis", "mis")
LEVELS = ("token", "sequence", "geometric")

LOG_WEIGHT_CLAMP = 20.0
"""log w is clamped to +-20 before exp(): the cap (or the mask) decides the outcome long before,
and a product over thousands of tokens must not overflow."""


def log_ratios(
    old_logprobs_NT: torch.Tensor, rollout_logprobs_NT: torch.Tensor, mask_NT: torch.Tensor,
    level: str,
) -> torch.Tensor:  # fmt: skip
    """log w at ``level``, broadcast to every token of its response (0 on padding)."""
    if level not in LEVELS:
        raise ValueError(f"unknown rollout-correction level {level!r}; use one of {LEVELS}")
    mask_NT = mask_NT.to(old_logprobs_NT.dtype)
    log_w_NT = (old_logprobs_NT - rollout_logprobs_NT).detach() * mask_NT
    if level == "token":
        return log_w_NT
    per_seq_N = log_w_NT.sum(dim=-1)
    if level == "geometric":
        per_seq_N = per_seq_N / mask_NT.sum(dim=-1).clamp(min=1.0)
    return per_seq_N.unsqueeze(-1) * mask_NT


def correction_weights(
    old_logprobs_NT: torch.Tensor,
    rollout_logprobs_NT: torch.Tensor,
    mask_NT: torch.Tensor,
    mode: str,
    level: str,
    cap: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token weights of the policy-gradient term (detached, 0 on padding) and their
    metrics: ``rollout_correction/weight_mean`` and ``weight_max`` (of the weights used),
    ``rollout_correction/corrected_frac`` (tokens truncated by TIS or masked by MIS)."""
    if mode not in ("tis", "mis"):
        raise ValueError(f"unknown rollout-correction mode {mode!r}; use tis or mis")
    if not cap > 1.0:
        raise ValueError(f"the rollout-correction cap must be > 1, got {cap}")
    mask_NT = mask_NT.to(old_logprobs_NT.dtype)
    log_w_NT = log_ratios(old_logprobs_NT, rollout_logprobs_NT, mask_NT, level)
    log_w_NT = log_w_NT.clamp(-LOG_WEIGHT_CLAMP, LOG_WEIGHT_CLAMP)
    log_cap = math.log(cap)
    if mode == "tis":
        corrected_NT = log_w_NT > log_cap
        weights_NT = log_w_NT.clamp(max=log_cap).exp()
    else:
        corrected_NT = log_w_NT.abs() > log_cap
        weights_NT = (~corrected_NT).to(mask_NT.dtype)
    weights_NT = weights_NT * mask_NT
    valid_NT = mask_NT.bool()
    metrics = {
        "rollout_correction/weight_mean": masked_mean(weights_NT, mask_NT),
        "rollout_correction/weight_max": torch.where(valid_NT, weights_NT, 0.0).max(),
        "rollout_correction/corrected_frac": masked_mean(corrected_NT.to(mask_NT.dtype), mask_NT),
    }
    return weights_NT.detach(), metrics


def mismatch_kl(
    old_logprobs_NT: torch.Tensor, rollout_logprobs_NT: torch.Tensor, mask_NT: torch.Tensor
) -> torch.Tensor:
    """Token-mean k3 estimate of KL(pi_rollout || pi_old) from tokens the engine sampled:
    r - log r - 1 with r = pi_old / pi_rollout; >= 0, 0 when the two engines agree."""
    log_r_NT = (old_logprobs_NT - rollout_logprobs_NT).detach().clamp(-20.0, 20.0)
    return masked_mean(log_r_NT.exp() - log_r_NT - 1.0, mask_NT.to(log_r_NT.dtype))
