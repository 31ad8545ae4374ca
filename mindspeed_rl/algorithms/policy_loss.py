"""GRPO's policy loss: PPO's clipped ratio objective, a KL penalty to the reference, an entropy
bonus, and the three ways of averaging per-token values into one loss.

Every tensor is [N, T]: N responses, T response positions, ``mask_NT`` 1 on the response's
tokens and 0 on padding. Log-probs are those of the sampled tokens.

    loss = agg(pg_NT) + kl_coef * agg(kl_NT) - entropy_coef * agg(entropy_NT)
    pg_NT = max(-A * ratio, -A * clamp(ratio, 1 - eps_low, 1 + eps_high)),  ratio = pi / pi_old

Aggregation (``loss_agg_mode``):
    token-mean               sum over all valid tokens / number of valid tokens (DAPO's
                             token-level loss: long responses weigh in per token)
    seq-mean-token-mean      mean over each response's tokens, then mean over responses
                             (the original GRPO: each response weighs the same)
    seq-mean-token-sum-norm  each response's token sum / max_response_length, then mean over
                             responses (Dr.GRPO: a constant normaliser, so no length bias)

In the two sequence modes a row with no valid token is padding and is not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mindspeed_rl.algorithms import rollout_correction as rc
from mindspeed_rl.algorithms.kl import KL_ESTIMATORS
from mindspeed_rl.algorithms.masking import masked_mean

LOG_RATIO_CLAMP = 20.0
"""log(pi / pi_old) is clamped to this before exp(): a token whose probability moved by e^20
contributes a clipped (constant) term anyway, and inf must not reach the loss."""


def _token_mean(
    values_NT: torch.Tensor, mask_NT: torch.Tensor, max_response_length: int | None
) -> torch.Tensor:
    return masked_mean(values_NT, mask_NT)


def _seq_mean(per_seq_N: torch.Tensor, tokens_N: torch.Tensor) -> torch.Tensor:
    return per_seq_N.sum() / (tokens_N > 0).sum().clamp(min=1)


def _seq_mean_token_mean(
    values_NT: torch.Tensor, mask_NT: torch.Tensor, max_response_length: int | None
) -> torch.Tensor:
    mask_NT = mask_NT.to(values_NT.dtype)
    tokens_N = mask_NT.sum(dim=-1)
    per_seq_N = (values_NT * mask_NT).sum(dim=-1) / tokens_N.clamp(min=1.0)
    return _seq_mean(per_seq_N, tokens_N)


def _seq_mean_token_sum_norm(
    values_NT: torch.Tensor, mask_NT: torch.Tensor, max_response_length: int | None
) -> torch.Tensor:
    if max_response_length is None:
        raise ValueError("seq-mean-token-sum-norm needs max_response_length")
    mask_NT = mask_NT.to(values_NT.dtype)
    per_seq_N = (values_NT * mask_NT).sum(dim=-1) / max_response_length
    return _seq_mean(per_seq_N, mask_NT.sum(dim=-1))


Aggregator = Callable[[torch.Tensor, torch.Tensor, int | None], torch.Tensor]

AGGREGATORS: dict[str, Aggregator] = {
    "token-mean": _token_mean,
    "seq-mean-token-mean": _seq_mean_token_mean,
    "seq-mean-token-sum-norm": _seq_mean_token_sum_norm,
}
"""Aggregation modes by the name a config gives (``GRPOLossConfig.loss_agg_mode``)."""


def aggregate(
    values_NT: torch.Tensor,
    mask_NT: torch.Tensor,
    mode: str,
    max_response_length: int | None = None,
) -> torch.Tensor:
    """Reduce per-token values to a scalar the way ``mode`` says (see the module docstring)."""
    if mode not in AGGREGATORS:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; use one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[mode](values_NT, mask_NT, max_response_length)


@dataclass
class GRPOLossConfig:
    """The GRPO / DAPO / Dr.GRPO policy loss."""

    clip_eps_low: float = 0.2
    """Lower clip: the ratio is clamped at 1 - clip_eps_low. In (0, 1)."""
    clip_eps_high: float = 0.2
    """Upper clip: the ratio is clamped at 1 + clip_eps_high. Equal to clip_eps_low is PPO's
    symmetric clip; larger (DAPO uses 0.28) is clip-higher, which leaves low-probability tokens
    more room to grow and keeps entropy from collapsing."""
    kl_coef: float = 0.001
    """Weight of the KL penalty to the reference policy; 0 turns it off (DAPO, Dr.GRPO) and
    then the reference log-probs need not be computed."""
    kl_estimator: str = "k3"
    """Per-token KL estimator: k1, k2 or k3 (see ``mindspeed_rl.algorithms.kl``)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss); 0 turns it off."""
    loss_agg_mode: str = "token-mean"
    """token-mean, seq-mean-token-mean or seq-mean-token-sum-norm (see module docstring)."""
    max_response_length: int | None = None
    """The constant normaliser of seq-mean-token-sum-norm, normally the rollout's maximum
    response length. Required by that mode, unused by the others."""
    rollout_correction: str = "none"
    """Correct for the inference engine sampling from a slightly different distribution than
    the policy trained (kernels, bf16, MoE routing): none; tis, truncated importance sampling
    (each token's policy-gradient term weighed by min(pi_old / pi_rollout, cap)); mis, masked
    importance sampling (terms whose ratio leaves [1/cap, cap] dropped). See
    mindspeed_rl.algorithms.rollout_correction."""
    rollout_correction_level: str = "token"
    """Where the ratio is taken: token, sequence (the product over a response) or geometric
    (the per-token geometric mean over a response)."""
    rollout_correction_cap: float = 2.0
    """The cap C of tis, the band [1/C, C] of mis; > 1."""

    def __post_init__(self) -> None:
        if not 0.0 < self.clip_eps_low < 1.0:
            raise ValueError(f"loss.clip_eps_low must be in (0, 1), got {self.clip_eps_low}")
        if not self.clip_eps_high > 0.0:
            raise ValueError(f"loss.clip_eps_high must be > 0, got {self.clip_eps_high}")
        if self.kl_coef < 0.0:
            raise ValueError(f"loss.kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"loss.kl_estimator {self.kl_estimator!r} is unknown; "
                f"use one of {', '.join(KL_ESTIMATORS)}"
            )
        if self.entropy_coef < 0.0:
            raise ValueError(f"loss.entropy_coef must be >= 0, got {self.entropy_coef}")
        if self.loss_agg_mode not in AGGREGATORS:
            raise ValueError(
                f"loss.loss_agg_mode {self.loss_agg_mode!r} is unknown; "
                f"use one of {', '.join(AGGREGATORS)}"
            )
        if self.max_response_length is not None and self.max_response_length < 1:
            raise ValueError(
                f"loss.max_response_length must be >= 1, got {self.max_response_length}"
            )
        if self.rollout_correction not in rc.MODES:
            raise ValueError(
                f"loss.rollout_correction must be one of {', '.join(rc.MODES)}, "
                f"got {self.rollout_correction!r}"
            )
        if self.rollout_correction_level not in rc.LEVELS:
            raise ValueError(
                f"loss.rollout_correction_level must be one of {', '.join(rc.LEVELS)}, "
                f"got {self.rollout_correction_level!r}"
            )
        if not self.rollout_correction_cap > 1.0:
            raise ValueError(
                f"loss.rollout_correction_cap must be > 1, got {self.rollout_correction_cap}"
            )
        if self.loss_agg_mode == "seq-mean-token-sum-norm" and self.max_response_length is None:
            raise ValueError(
                "loss.max_response_length must be set when loss.loss_agg_mode is "
                "seq-mean-token-sum-norm (set it to the rollout's maximum response length)"
            )


def clipped_policy_loss(
    logprobs_NT: torch.Tensor,
    old_logprobs_NT: torch.Tensor,
    advantages_NT: torch.Tensor,
    mask_NT: torch.Tensor,
    clip_eps_low: float,
    clip_eps_high: float,
    loss_agg_mode: str = "token-mean",
    max_response_length: int | None = None,
    weights_NT: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (to be minimised), aggregated, and its diagnostics.
    ``weights_NT`` (no gradient) multiply each token's term: the rollout correction.

    Metrics (detached scalars, over valid tokens):
        actor/clip_frac   fraction of tokens where the clipped term is the larger loss, so the
                          token gives no gradient
        actor/ppo_kl      mean(old_logp - logp), the k1 estimate of KL(pi_old || pi)
        actor/ratio_mean, actor/ratio_max
    """
    log_ratio_NT = (logprobs_NT - old_logprobs_NT).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio_NT = log_ratio_NT.exp()
    unclipped_NT = -advantages_NT * ratio_NT
    clipped_NT = -advantages_NT * ratio_NT.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)
    pg_NT = torch.maximum(unclipped_NT, clipped_NT)
    if weights_NT is not None:
        pg_NT = pg_NT * weights_NT
    pg_loss = aggregate(pg_NT, mask_NT, loss_agg_mode, max_response_length)

    with torch.no_grad():
        valid_NT = mask_NT.bool()
        metrics = {
            "actor/clip_frac": masked_mean((clipped_NT > unclipped_NT).float(), mask_NT),
            "actor/ppo_kl": masked_mean(-log_ratio_NT, mask_NT),
            "actor/ratio_mean": masked_mean(ratio_NT, mask_NT),
            # ratio > 0, so 0 on padding never wins the max (and is the answer with no tokens).
            "actor/ratio_max": torch.where(valid_NT, ratio_NT, 0.0).max(),
        }
    return pg_loss, metrics


def grpo_loss(
    logprobs_NT: torch.Tensor,
    old_logprobs_NT: torch.Tensor,
    ref_logprobs_NT: torch.Tensor | None,
    advantages_NT: torch.Tensor,
    mask_NT: torch.Tensor,
    entropy_NT: torch.Tensor | None,
    config: GRPOLossConfig,
    rollout_logprobs_NT: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss to minimise for one (micro-)batch, and its metrics.

    ``rollout_logprobs_NT``, the inference engine's log-probs of the sampled tokens, are
    needed by ``config.rollout_correction``; when given they are always compared with
    ``old_logprobs_NT`` (rollout/mismatch_kl).

    ``ref_logprobs_NT`` may be None only when ``config.kl_coef`` is 0, ``entropy_NT`` only when
    ``config.entropy_coef`` is 0; when given anyway they are still measured. Only
    ``logprobs_NT`` and ``entropy_NT`` carry gradients.

    Metrics are detached 0-dim tensors, not floats, so a step does not force a device sync per
    micro-batch and the trainer can all-reduce them before calling ``.item()``:
        actor/pg_loss   the aggregated clipped surrogate
        actor/kl        token-mean KL to the reference (whatever the aggregation mode, so runs
                        compare), when ``ref_logprobs_NT`` is given
        actor/entropy   token-mean entropy, when ``entropy_NT`` is given
        actor/loss      the total
        rollout/mismatch_kl, rollout_correction/*   see :mod:`.rollout_correction`
        and those of :func:`clipped_policy_loss`.
    """
    if config.kl_coef > 0 and ref_logprobs_NT is None:
        raise ValueError("loss.kl_coef > 0 needs reference log-probs; got ref_logprobs_NT=None")
    if config.entropy_coef > 0 and entropy_NT is None:
        raise ValueError("loss.entropy_coef > 0 needs the entropy; got entropy_NT=None")
    agg_mode, max_len = config.loss_agg_mode, config.max_response_length
    weights_NT, corrections = None, {}
    if rollout_logprobs_NT is not None:
        corrections["rollout/mismatch_kl"] = rc.mismatch_kl(
            old_logprobs_NT, rollout_logprobs_NT, mask_NT
        )
        if config.rollout_correction != "none":
            weights_NT, more = rc.correction_weights(
                old_logprobs_NT, rollout_logprobs_NT, mask_NT, config.rollout_correction,
                config.rollout_correction_level, config.rollout_correction_cap,
            )  # fmt: skip
            corrections.update(more)
    elif config.rollout_correction != "none":
        raise ValueError(
            f"loss.rollout_correction={config.rollout_correction} needs the engine's log-probs; "
            "got rollout_logprobs_NT=None"
        )

    pg_loss, metrics = clipped_policy_loss(
        logprobs_NT,
        old_logprobs_NT,
        advantages_NT,
        mask_NT,
        config.clip_eps_low,
        config.clip_eps_high,
        agg_mode,
        max_len,
        weights_NT,
    )
    metrics.update(corrections)
    loss = pg_loss
    metrics["actor/pg_loss"] = pg_loss.detach()

    if ref_logprobs_NT is not None:
        kl_NT = KL_ESTIMATORS[config.kl_estimator](logprobs_NT, ref_logprobs_NT)
        if config.kl_coef > 0:
            loss = loss + config.kl_coef * aggregate(kl_NT, mask_NT, agg_mode, max_len)
        metrics["actor/kl"] = masked_mean(kl_NT.detach(), mask_NT)

    if entropy_NT is not None:
        if config.entropy_coef > 0:
            loss = loss - config.entropy_coef * aggregate(entropy_NT, mask_NT, agg_mode, max_len)
        metrics["actor/entropy"] = masked_mean(entropy_NT.detach(), mask_NT)

    metrics["actor/loss"] = loss.detach()
    return loss, metrics
