"""Micro-batches through megatron-core's own pipeline schedules.

``run_schedule`` hands our micro-batches and loss to ``get_forward_backward_func()``: no
pipelining at PP = 1, 1F1B at PP > 1, interleaved 1F1B with virtual pipeline stages. The
schedule calls the forward step below per micro-batch and chunk; gradients land in the DDP
buffers and ``finalize_model_grads`` reduces them over data-parallel ranks and divides them by
the loss counts summed over micro-batches and ranks (``calculate_per_token_loss``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from megatron.core.distributed import finalize_model_grads
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.tensor_parallel import gather_from_sequence_parallel_region
from megatron.core.utils import get_model_config
from torch.utils.checkpoint import checkpoint

from mindspeed_rl.accelerator import megatron_device_scope
from mindspeed_rl.training.logprobs import vocab_parallel_logprobs
from mindspeed_rl.training.model import unwrap


@dataclass
class MicroBatch:
    """Inputs of one micro-batch."""

    tokens_BS: torch.Tensor
    position_ids_BS: torch.Tensor
    attention_mask_B1SS: torch.Tensor | None
    """True where attention is NOT allowed (Megatron's convention); None with ``packed``."""
    extra: dict[str, torch.Tensor]
    """Whatever the loss needs (labels, masks, advantages, ...), on the last stage."""
    logits_from: int = 0
    """First position whose logits the loss reads: the output layer skips the ones before it
    (the prompt's), so ``loss_fn`` gets logits for positions ``logits_from..S-1``."""
    logits_index: torch.Tensor | None = None
    """Instead of ``logits_from``: exactly the positions whose logits the loss reads, in the
    order it reads them (shared-prompt packing, where one position predicts several tokens)."""
    rope_positions: torch.Tensor | None = None
    """RoPE position of each of the S tokens when it is not ``0..S-1`` (shared-prompt packing:
    every response continues from the prompt's length). Needs batch size 1."""
    filler: bool = False
    """A copy that only pads the micro-batch count (interleaved schedules need a multiple of
    the pipeline size; data-parallel ranks run as many micro-batches as each other): its loss
    and count are zero."""
    packed: PackedSeqParams | None = None
    """Sequences packed back to back in one row of ``tokens_BS`` (THD): each attends to
    itself only and its RoPE positions restart at 0 (``cu_seqlens`` bounds them)."""
    targets_BN: torch.Tensor | None = None
    """The token each position of the logits window scores, ``[B, N]`` (N: ``logits_index``'s
    length, or the positions from ``logits_from`` on that have a next token): what
    :class:`TokenScores` scores."""


# loss_fn(output, micro_batch) -> (loss sum, count it sums over, outputs to return); the output
# is this TP rank's vocabulary slice of the window's logits [B, N, V/TP], or with TokenScores
# the [B, N, 2] log-probs and entropies.
LossFn = Callable[[torch.Tensor, MicroBatch], tuple[torch.Tensor, torch.Tensor, Any]]


@dataclass(frozen=True)
class TokenScores:
    """What the output layer computes instead of logits when a loss reads only the log-prob of
    each position's next token (and the entropy of its distribution): the last stage's output
    is then ``[B, N, 2]`` (log-prob, entropy) for the window's N positions, scored against
    ``MicroBatch.targets_BN``."""

    vocab_size: int
    """The real (unpadded) vocabulary: the distribution the inference engine samples from."""
    temperature: float = 1.0
    entropy: bool = False
    """Compute the entropy (otherwise its column is 0)."""
    entropy_grad: bool = False
    """Differentiate through the entropy (an entropy bonus); otherwise it is a metric only."""
    chunk_tokens: int = 0
    """At most this many positions (rows x positions) have logits at once; 0: the whole
    window. A longer window is scored chunk by chunk and, with gradients, each chunk's logits
    are recomputed in backward instead of kept, so memory no longer grows with the response
    tokens of a pass; the price is one more output-layer forward per chunk."""


class _OutputHead:
    """Stands in for the output layer's ``forward``: logits (or token scores) only for the
    positions the loss reads.

    GPTModel computes logits for every position; RL losses read only the response's. The
    vocabulary projection and its log-softmax are a fifth of SmolLM2's forward-backward and
    more of its memory, and prompts are most of a short-answer sequence, so skipping them
    pays. Selecting rows of the output layer's input [S, B, H] keeps the parameter names
    untouched. With :class:`TokenScores` the layer returns per-token log-probs and entropies
    computed a chunk at a time (see ``TokenScores.chunk_tokens``), never the [N, V] logits.

    Under sequence parallelism the input is this rank's slice of the sequence: the head
    gathers the whole sequence first and the output layer then runs as a plain column-parallel
    layer (its backward sums the input gradient over TP once; the gather's backward only
    splits it again, ``tensor_parallel_output_grad=False``).
    """

    def __init__(self, forward: Callable, sequence_parallel: bool) -> None:
        self.layer_forward = forward
        self.sequence_parallel = sequence_parallel
        self.start = 0
        self.index: torch.Tensor | None = None
        self.targets_BN: torch.Tensor | None = None
        self.scores: TokenScores | None = None

    def __call__(self, hidden_SBH: torch.Tensor, weight=None, runtime_gather_output=None):
        if self.sequence_parallel:
            hidden_SBH = gather_from_sequence_parallel_region(
                hidden_SBH, tensor_parallel_output_grad=False
            )
        if self.index is not None:
            hidden_SBH = hidden_SBH.index_select(0, self.index)
        elif self.start:
            hidden_SBH = hidden_SBH[self.start :]
        layer = functools.partial(
            self.layer_forward, weight=weight, runtime_gather_output=runtime_gather_output
        )
        if self.scores is None:
            return layer(hidden_SBH)
        assert self.targets_BN is not None, "TokenScores need MicroBatch.targets_BN"
        targets_NB = self.targets_BN.t()
        return _token_scores(layer, hidden_SBH[: len(targets_NB)], targets_NB, self.scores), None


def _token_scores(
    layer: Callable, hidden_NBH: torch.Tensor, targets_NB: torch.Tensor, s: TokenScores
) -> torch.Tensor:
    """``[N, B, 2]``: log-prob of each target and the entropy at its position, from the output
    layer's logits of at most ``s.chunk_tokens`` positions at a time."""

    def score(h_cBH: torch.Tensor, t_cB: torch.Tensor) -> torch.Tensor:
        logits_cBV, _ = layer(h_cBH)
        lp, ent = vocab_parallel_logprobs(
            logits_cBV, t_cB, s.vocab_size, s.temperature, s.entropy, s.entropy_grad
        )
        return torch.stack([lp, ent if ent is not None else torch.zeros_like(lp)], -1)

    n, rows = targets_NB.shape
    step = max(1, s.chunk_tokens // max(rows, 1)) if s.chunk_tokens else max(n, 1)
    if n <= step:
        return score(hidden_NBH, targets_NB)
    parts = []
    for a in range(0, n, step):
        h, t = hidden_NBH[a : a + step], targets_NB[a : a + step]
        if torch.is_grad_enabled():
            # Non-reentrant: the chunk is recomputed inside the one backward pass, and its
            # gradients reach the output weight through the graph as without chunks.
            parts.append(checkpoint(score, h, t, use_reentrant=False))
        else:
            parts.append(score(h, t))
    return torch.cat(parts)


def _output_head(gpt: torch.nn.Module) -> _OutputHead:
    """The output layer's head, installed on first use (see :class:`_OutputHead`)."""
    layer = gpt.output_layer

    def register(head: _OutputHead) -> None:
        if head.sequence_parallel:
            layer.sequence_parallel = False  # the head gathers instead
        layer.forward = head  # an instance attribute: nn.Module.__call__ runs it

    return _hook(
        gpt, "_mindspeed_output_head",
        lambda: _OutputHead(layer.forward, bool(gpt.config.sequence_parallel)), register,
    )  # fmt: skip


class _RopePositions:
    """Forward hook on the rotary embedding: its [S, 1, 1, D] table re-indexed by position.

    megatron-core's local attention path gives token s the RoPE angle of position s; packing
    several responses after one prompt needs each response to continue from the prompt's
    length instead. Position embeddings are otherwise untouched.
    """

    def __init__(self) -> None:
        self.positions: torch.Tensor | None = None

    def __call__(self, module, args, output):
        if self.positions is None:
            return None
        return output.index_select(0, self.positions)


def _hook(model: torch.nn.Module, name: str, make: Callable[[], Any], register) -> Any:
    """The hook stored on ``model`` as ``name``; made and registered (``register(hook)``) the
    first time, so a model carries each hook once however many steps it runs."""
    hook = getattr(model, name, None)
    if hook is None:
        hook = make()
        register(hook)
        setattr(model, name, hook)
    return hook


def causal_mask(seq_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[1, 1, S, S]`` boolean mask, True above the diagonal (future positions)."""
    return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device), 1)[None, None]


def _loss_step(loss_fn: LossFn, mb: MicroBatch, output: torch.Tensor):
    if mb.filler:  # no loss, no count, and none of loss_fn's own bookkeeping
        return output.sum() * 0, torch.zeros((), dtype=torch.int), None
    loss, count, result = loss_fn(output, mb)
    return loss, count.detach().to(torch.int).reshape(()), result


def _forward_step(
    loss_fn: LossFn, scores: TokenScores | None, data_iterator, model: torch.nn.Module
):
    """megatron-core's forward-step contract: (output, loss function of the output)."""
    mb: MicroBatch = next(data_iterator)
    gpt = unwrap(model)
    if gpt.post_process:
        head = _output_head(gpt)
        head.start, head.index, head.targets_BN = mb.logits_from, mb.logits_index, mb.targets_BN
        head.scores = scores
    # Installed on first use, then kept: every micro-batch sets it (None = plain positions).
    rope = getattr(gpt, "_mindspeed_rope_positions", None)
    if rope is None and mb.rope_positions is not None:
        rope = _hook(
            gpt, "_mindspeed_rope_positions", _RopePositions,
            gpt.rotary_pos_emb.register_forward_hook,
        )  # fmt: skip
    if rope is not None:
        rope.positions = mb.rope_positions
    output = model(
        mb.tokens_BS,
        mb.position_ids_BS,
        attention_mask=mb.attention_mask_B1SS,
        packed_seq_params=mb.packed,
    )
    return output, functools.partial(_loss_step, loss_fn, mb)


def configure_chunks(chunks: Sequence[torch.nn.Module], overlap_grad_reduce: bool) -> None:
    """Wire megatron-core's schedule hooks to the DDP chunks, as Megatron-LM's trainer does:
    the gradient finalisation and, when reductions overlap backward, the no-sync context."""
    config = get_model_config(chunks[0])
    config.finalize_model_grads_func = finalize_model_grads
    if overlap_grad_reduce:
        no_sync = [c.no_sync for c in chunks]
        config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync


def _pad_count(micro_batches: list[MicroBatch], multiple: int) -> list[MicroBatch]:
    missing = -len(micro_batches) % multiple
    return micro_batches + [replace(micro_batches[-1], filler=True)] * missing


def run_schedule(
    chunks: Sequence[torch.nn.Module],
    micro_batches: Sequence[MicroBatch],
    loss_fn: LossFn,
    forward_only: bool,
    scores: TokenScores | None = None,
) -> list[Any]:
    """Run every micro-batch through this rank's chunks; backward unless ``forward_only``.

    ``scores``: the last stage outputs token scores instead of logits (:class:`TokenScores`).
    Returns what ``loss_fn`` returned for each micro-batch on the last stage (an empty list on
    other stages). With backward, the gradients are reduced and normalised when it returns.
    """
    mbs = list(micro_batches)
    if len(chunks) > 1:
        from megatron.core import parallel_state

        mbs = _pad_count(mbs, parallel_state.get_pipeline_model_parallel_world_size())
    seq = max(mb.tokens_BS.shape[1] for mb in mbs)
    rows = max(mb.tokens_BS.shape[0] for mb in mbs)
    iterators = [iter(mbs) for _ in chunks]
    # Pipeline sends exchange shapes first only when the micro-batches differ in shape.
    get_model_config(chunks[0]).variable_seq_lengths = len({mb.tokens_BS.shape for mb in mbs}) > 1
    with megatron_device_scope(), torch.set_grad_enabled(not forward_only):
        for c in chunks:
            c.train(not forward_only)
        results = get_forward_backward_func()(
            forward_step_func=functools.partial(_forward_step, loss_fn, scores),
            data_iterator=iterators if len(chunks) > 1 else iterators[0],
            model=list(chunks),
            num_microbatches=len(mbs),
            seq_length=seq,
            micro_batch_size=rows,
            forward_only=forward_only,
        )
    return [r for r, mb in zip(results, mbs) if not mb.filler]
