"""A device-agnostic pipeline schedule for megatron-core's GPTModel.

megatron-core's own schedules allocate counters with ``device="cuda"`` and synchronise CUDA
streams, so they cannot run on CPU (or, without torch_npu's mapping, on NPU). This schedule
is GPipe-style: every micro-batch goes forward through the stages, then every micro-batch
goes backward in reverse order (with one stage, each micro-batch's backward follows its
forward at once). Activations travel between neighbouring stages with
point-to-point send / recv on the pipeline group; with PP=1 it is a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state


@dataclass
class MicroBatch:
    """Inputs of one micro-batch; every micro-batch of a step has the same shape."""

    tokens_BS: torch.Tensor
    position_ids_BS: torch.Tensor
    attention_mask_B1SS: torch.Tensor
    """True where attention is NOT allowed (Megatron's convention)."""
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


# loss_fn(logits_BSV_local, micro_batch) -> (loss to backprop, outputs to return)
LossFn = Callable[[torch.Tensor, MicroBatch], tuple[torch.Tensor, Any]]


class _OutputWindow:
    """Forward pre-hook on the output layer: logits only for the positions the loss reads.

    GPTModel computes logits for every position; RL losses read only the response's. The
    vocabulary projection and its log-softmax are a fifth of SmolLM2's forward-backward and
    more of its memory, and prompts are most of a short-answer sequence, so skipping them
    pays. Slicing the output layer's input [S, B, H] keeps the parameter names untouched.
    """

    def __init__(self) -> None:
        self.start = 0
        self.index: torch.Tensor | None = None

    def __call__(self, module, args, kwargs):
        hidden_SBH = args[0]
        if self.index is not None:
            hidden_SBH = hidden_SBH.index_select(0, self.index)
        elif self.start:
            hidden_SBH = hidden_SBH[self.start :]
        else:
            return None
        return (hidden_SBH, *args[1:]), kwargs


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


def _recv(shape: Sequence[int], dtype: torch.dtype, device: torch.device, src: int):
    buf = torch.empty(*shape, dtype=dtype, device=device)
    dist.recv(buf, src=src, group=parallel_state.get_pipeline_model_parallel_group())
    return buf


def _send(tensor: torch.Tensor, dst: int) -> None:
    dist.send(
        tensor.contiguous(), dst=dst, group=parallel_state.get_pipeline_model_parallel_group()
    )


def forward_backward(
    model: torch.nn.Module,
    micro_batches: Sequence[MicroBatch],
    loss_fn: LossFn,
    forward_only: bool,
    hidden_size: int,
    dtype: torch.dtype,
) -> list[Any]:
    """Run every micro-batch through this rank's stage; backward unless ``forward_only``.

    Returns what ``loss_fn`` returned for each micro-batch on the last stage, and an empty
    list on other stages. Gradients accumulate into the parameters' ``.grad``.
    """
    first = parallel_state.is_pipeline_first_stage()
    last = parallel_state.is_pipeline_last_stage()
    prev_rank = parallel_state.get_pipeline_model_parallel_prev_rank()
    next_rank = parallel_state.get_pipeline_model_parallel_next_rank()
    device = next(model.parameters()).device
    inputs: list[torch.Tensor | None] = []
    outputs: list[torch.Tensor] = []
    results: list[Any] = []
    window = None
    if last:
        window = _hook(
            model, "_mindspeed_output_window", _OutputWindow,
            lambda h: model.output_layer.register_forward_pre_hook(h, with_kwargs=True),
        )  # fmt: skip
    # Installed on first use, then kept: every micro-batch sets it (None = plain positions).
    rope = getattr(model, "_mindspeed_rope_positions", None)
    if rope is None and any(mb.rope_positions is not None for mb in micro_batches):
        rope = _hook(
            model, "_mindspeed_rope_positions", _RopePositions,
            model.rotary_pos_emb.register_forward_hook,
        )  # fmt: skip

    with torch.set_grad_enabled(not forward_only):
        for mb in micro_batches:
            batch, seq = mb.tokens_BS.shape
            input_SBH = None
            if not first:
                input_SBH = _recv((seq, batch, hidden_size), dtype, device, prev_rank)
                input_SBH.requires_grad_(not forward_only)
                model.set_input_tensor(input_SBH)
            if window is not None:
                window.start, window.index = mb.logits_from, mb.logits_index
            if rope is not None:
                rope.positions = mb.rope_positions
            out = model(mb.tokens_BS, mb.position_ids_BS, attention_mask=mb.attention_mask_B1SS)
            if last:
                loss, result = loss_fn(out, mb)
                results.append(result)
                out = loss
            else:
                _send(out.detach(), next_rank)
            if first and last:
                # One stage: backward right away, so only one micro-batch's activations (and
                # its vocabulary-sized log-softmax buffers) are alive at a time.
                if not forward_only:
                    out.backward()
                continue
            inputs.append(input_SBH)
            outputs.append(out)

    if forward_only or (first and last):
        return results
    for input_SBH, out in zip(reversed(inputs), reversed(outputs)):
        if last:
            out.backward()
        else:
            grad_SBH = _recv(out.shape, out.dtype, device, next_rank)
            out.backward(grad_SBH)
        if not first:
            assert input_SBH is not None and input_SBH.grad is not None
            _send(input_SBH.grad, prev_rank)
    return results
