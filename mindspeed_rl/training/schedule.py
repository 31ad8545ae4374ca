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

from mindspeed_rl.accelerator import megatron_device_scope
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


# loss_fn(logits_BSV_local, micro_batch) -> (loss sum, count it sums over, outputs to return)
LossFn = Callable[[torch.Tensor, MicroBatch], tuple[torch.Tensor, torch.Tensor, Any]]


class _OutputWindow:
    """Forward pre-hook on the output layer: logits only for the positions the loss reads.

    GPTModel computes logits for every position; RL losses read only the response's. The
    vocabulary projection and its log-softmax are a fifth of SmolLM2's forward-backward and
    more of its memory, and prompts are most of a short-answer sequence, so skipping them
    pays. Slicing the output layer's input [S, B, H] keeps the parameter names untouched.

    Under sequence parallelism the input is this rank's slice of the sequence: the hook
    gathers the whole sequence first and the output layer then runs as a plain column-parallel
    layer (its backward sums the input gradient over TP once; the gather's backward only
    splits it again, ``tensor_parallel_output_grad=False``).
    """

    def __init__(self, sequence_parallel: bool) -> None:
        self.start = 0
        self.index: torch.Tensor | None = None
        self.sequence_parallel = sequence_parallel

    def __call__(self, module, args, kwargs):
        hidden_SBH = args[0]
        if self.sequence_parallel:
            hidden_SBH = gather_from_sequence_parallel_region(
                hidden_SBH, tensor_parallel_output_grad=False
            )
        if self.index is not None:
            hidden_SBH = hidden_SBH.index_select(0, self.index)
        elif self.start:
            hidden_SBH = hidden_SBH[self.start :]
        elif not self.sequence_parallel:
            return None
        return (hidden_SBH, *args[1:]), kwargs


def _output_window(gpt: torch.nn.Module) -> _OutputWindow:
    """The output layer's window hook, installed on first use (see :class:`_OutputWindow`)."""

    def register(hook: _OutputWindow) -> None:
        if hook.sequence_parallel:
            gpt.output_layer.sequence_parallel = False  # the hook gathers instead
        gpt.output_layer.register_forward_pre_hook(hook, with_kwargs=True)

    return _hook(
        gpt, "_mindspeed_output_window",
        lambda: _OutputWindow(bool(gpt.config.sequence_parallel)), register,
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


def _forward_step(loss_fn: LossFn, data_iterator, model: torch.nn.Module):
    """megatron-core's forward-step contract: (output, loss function of the output)."""
    mb: MicroBatch = next(data_iterator)
    gpt = unwrap(model)
    if gpt.post_process:
        window = _output_window(gpt)
        window.start, window.index = mb.logits_from, mb.logits_index
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
) -> list[Any]:
    """Run every micro-batch through this rank's chunks; backward unless ``forward_only``.

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
            forward_step_func=functools.partial(_forward_step, loss_fn),
            data_iterator=iterators if len(chunks) > 1 else iterators[0],
            model=list(chunks),
            num_microbatches=len(mbs),
            seq_length=seq,
            micro_batch_size=rows,
            forward_only=forward_only,
        )
    return [r for r, mb in zip(results, mbs) if not mb.filler]
