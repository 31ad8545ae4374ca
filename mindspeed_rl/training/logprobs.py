"""Token log-probs and entropy from vocab-parallel logits, without gathering the vocabulary.

Each TP rank holds a slice of the (padded) vocabulary. The softmax normaliser is assembled
with two all-reduces (max, sum of exp), the target's logit with a third. Padding rows of the
vocabulary are masked out, so the distribution is over the real vocabulary only: the same
distribution the inference engine samples from.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

_MASKED_LOGIT = -1e30


def vocab_parallel_logprobs(
    logits_BSV: torch.Tensor,
    targets_BS: torch.Tensor,
    vocab_size: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / temperature)[target] per position, and optionally the entropy.

    ``logits_BSV`` is this TP rank's vocabulary slice; ``vocab_size`` the real (unpadded)
    size. Differentiable with respect to the logits; the entropy only if ``entropy_grad``
    (without it, an entropy logged as a metric costs no backward pass over the vocabulary).
    """
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    group = parallel_state.get_tensor_model_parallel_group()
    local_v = logits_BSV.shape[-1]
    start = tp_rank * local_v
    logits = logits_BSV.float() / temperature
    real_cols = max(0, min(local_v, vocab_size - start))
    if real_cols < local_v:
        pad = torch.zeros(local_v, dtype=torch.bool, device=logits.device)
        pad[real_cols:] = True
        # A large finite value, not -inf: exp() is still exactly 0, and 0 * value stays
        # finite in the entropy term and in every gradient.
        logits = logits.masked_fill(pad, _MASKED_LOGIT)

    max_BS = logits.detach().max(dim=-1).values
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        dist.all_reduce(max_BS, op=dist.ReduceOp.MAX, group=group)
    shifted = logits - max_BS.unsqueeze(-1)
    exp = shifted.exp()
    sum_exp_BS = reduce_from_tensor_model_parallel_region(exp.sum(dim=-1))
    log_z_BS = sum_exp_BS.log()

    local_targets = targets_BS - start
    in_slice = (local_targets >= 0) & (local_targets < local_v)
    picked = shifted.gather(-1, local_targets.clamp(0, local_v - 1).unsqueeze(-1)).squeeze(-1)
    target_BS = reduce_from_tensor_model_parallel_region(picked.masked_fill(~in_slice, 0.0))
    logprobs_BS = target_BS - log_z_BS

    entropy_BS = None
    if with_entropy:
        # H = log Z - sum_v p_v * shifted_v, with p_v = exp_v / Z; masked columns have p = 0.
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            weighted_BS = reduce_from_tensor_model_parallel_region((exp * shifted).sum(-1))
            expected_BS = weighted_BS / sum_exp_BS
            entropy_BS = log_z_BS - expected_BS
    return logprobs_BS, entropy_BS
