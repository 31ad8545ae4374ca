"""The actor's optimizer: megatron-core's (``get_megatron_optimizer``), plus the learning-rate
schedule (its checkpoints: :mod:`mindspeed_rl.training.checkpoint`).

megatron-core picks the optimizer class: fp32 params step in place; bf16 params get fp32 main
params inside the optimizer; with the distributed optimizer the main params and Adam moments
are sharded over the data-parallel ranks (gradients reduce-scattered, updated params
all-gathered). Gradient clipping uses megatron-core's global norm, which counts every
parameter once across TP, PP and tied-embedding copies. Adam is TE's or apex's fused Adam
when present, else torch's AdamW: decoupled weight decay in every case, none on norms and
biases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from megatron.core.optimizer.optimizer import Float16OptimizerWithFloat16Params, FP32Optimizer

from mindspeed_rl.accelerator import megatron_device_scope


@dataclass(frozen=True)
class AdamSettings:
    """What the trainer sets of megatron-core's OptimizerConfig."""

    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    clip_grad: float
    """Global grad-norm clip; 0: none."""
    use_distributed_optimizer: bool = False


def build_optimizer(
    chunks: list[torch.nn.Module], adam: AdamSettings, params_dtype: torch.dtype
) -> MegatronOptimizer:
    """megatron-core's optimizer over this rank's DDP-wrapped chunks."""
    config = OptimizerConfig(
        optimizer="adam",
        lr=adam.lr,
        min_lr=0.0,
        weight_decay=adam.weight_decay,
        adam_beta1=adam.betas[0],
        adam_beta2=adam.betas[1],
        adam_eps=adam.eps,
        clip_grad=adam.clip_grad,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        params_dtype=params_dtype,
        use_distributed_optimizer=adam.use_distributed_optimizer,
    )
    with megatron_device_scope():
        return get_megatron_optimizer(config, chunks)


def init_main_params(
    optimizer: MegatronOptimizer,
    chunks: list[torch.nn.Module],
    states: list[dict[str, torch.Tensor]],
) -> int:
    """Set the fp32 main params of bf16 / fp16 model params from ``states`` (per chunk, the
    checkpoint's tensors by state-dict key, e.g. fp32); returns how many tensors were set.

    megatron-core makes the main params by up-casting the half-precision params, so a run
    started from an fp32 checkpoint has its masters on the bf16 grid. A step of lr 1e-5 then
    moves a bf16 weight only where it crosses half a bf16 spacing: from the grid, 2 % of
    SmolLM2's weights change after the first step (6.7 % from the fp32 values), and the
    policy barely moves for the first ~10-20 iterations (bench/learning_parity.py). From the
    checkpoint's own values the masters start where the model really is, and each bf16
    weight moves by its fp32 update on average, as with TRL's fp32 weights under autocast.
    """
    source: dict[torch.nn.Parameter, torch.Tensor] = {}
    for chunk, state in zip(chunks, states, strict=True):
        module = chunk.module if hasattr(chunk, "module") else chunk
        for name, param in module.named_parameters():
            if name in state:
                source[param] = state[name]
    count = 0
    with torch.no_grad():
        for opt in _inner_optimizers(optimizer):
            if isinstance(opt, DistributedOptimizer):
                for model_group, main_group in zip(
                    opt.model_float16_groups, opt.shard_fp32_from_float16_groups
                ):
                    for model_param, main in zip(model_group, main_group):
                        span = opt._get_model_param_range_map(model_param)["param"]
                        flat = source[model_param].reshape(-1)[span.start : span.end]
                        main.copy_(flat.to(main.device, main.dtype))
                        count += 1
            elif isinstance(opt, Float16OptimizerWithFloat16Params):
                for model_group, main_group in zip(
                    opt.float16_groups, opt.fp32_from_float16_groups
                ):
                    for model_param, main in zip(model_group, main_group):
                        main.copy_(source[model_param].to(main.device, main.dtype))
                        count += 1
    return count


def set_lr(optimizer: MegatronOptimizer, lr: float) -> None:
    """Learning rate of the next step, for every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def step(optimizer: MegatronOptimizer) -> float:
    """One optimizer step on the reduced gradients; returns the global grad norm before
    clipping (NaN when a non-finite gradient made megatron-core skip the update)."""
    with megatron_device_scope():
        ok, grad_norm, _ = optimizer.step()
    if not ok or grad_norm is None:
        return math.nan
    return float(grad_norm)


def _inner_optimizers(optimizer: MegatronOptimizer) -> list[MegatronOptimizer]:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _state_slots(optimizer: MegatronOptimizer):
    """(key, holder, name) of every tensor megatron-core's ``offload_to_cpu`` moves off the
    device: ``holder.data`` (name None) is a tensor the inner torch optimizer steps (fp32 main
    params for bf16 training, this rank's shard of them with the distributed optimizer),
    ``holder[name]`` one of its Adam state tensors. Keys are stable across iterations."""
    for i, opt in enumerate(_inner_optimizers(optimizer)):
        inner = opt.optimizer
        for g, group in enumerate(inner.param_groups):
            for j, p in enumerate(group["params"]):
                yield (i, g, j, None), p, None
                for name, v in inner.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and v.dim() > 0:
                        yield (i, g, j, name), inner.state[p], name


def _slot_get(holder, name: str | None) -> torch.Tensor:
    return holder.data if name is None else holder[name]


def _slot_put(holder, name: str | None, tensor: torch.Tensor) -> None:
    if name is None:
        holder.data = tensor
    else:
        holder[name] = tensor


def state_tensors(optimizer: MegatronOptimizer) -> list[torch.Tensor]:
    """What megatron-core's ``offload_to_cpu`` moves off the device (see :func:`_state_slots`)."""
    return [_slot_get(holder, name) for _, holder, name in _state_slots(optimizer)]


def steps_model_params(optimizer: MegatronOptimizer) -> bool:
    """Whether the optimizer steps the model's own parameters (fp32 params with the replicated
    optimizer: megatron-core's FP32Optimizer keeps no main copies), so that offloading it
    (``p.data = p.data.cpu()``) moves the model's weights as well."""
    return any(isinstance(opt, FP32Optimizer) for opt in _inner_optimizers(optimizer))


def state_bytes(optimizer: MegatronOptimizer) -> int:
    return sum(t.numel() * t.element_size() for t in state_tensors(optimizer))


def lr_at(iteration: int, total: int, lr: float, min_lr: float, warmup: int, decay: str) -> float:
    """Learning rate of 1-based ``iteration``: linear warm-up, then constant or cosine.

    A pure function of the iteration (not megatron-core's stateful OptimizerParamScheduler),
    so a resumed run needs no scheduler state, and the first step already uses a non-zero
    rate during warm-up.
    """
    if warmup and iteration <= warmup:
        return lr * iteration / warmup
    if decay == "constant":
        return lr
    progress = (iteration - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


class HostMirror:
    """The optimizer's state moved to host buffers that are allocated once and reused every
    iteration, page-locked with ``pin`` (``rollout.pin_host_memory``).

    megatron-core's ``offload_to_cpu`` moves the same tensors (those :func:`state_tensors`
    lists) with ``.cpu()``: a fresh pageable host tensor every iteration, which the driver
    copies through a staging buffer. Page-locked buffers take DMA copies at the link's speed
    and, being reused, are allocated once; the price is that they stay page-locked for the
    whole run (``cli/plan.py`` prints the bytes per node).
    """

    def __init__(self, optimizer: MegatronOptimizer, pin: bool) -> None:
        self.optimizer = optimizer
        self.pin = pin
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.device: torch.device | None = None

    def offload(self, synchronize: Callable[[], None]) -> int:
        """Copy every tensor into its host buffer and point the optimizer at the buffers (the
        device copies are freed once the copies are done); returns the bytes moved."""
        moves = []
        for key, holder, name in _state_slots(self.optimizer):
            t = _slot_get(holder, name)
            host = self.buffers.get(key)
            if host is None or host.shape != t.shape or host.dtype != t.dtype:
                host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=self.pin)
                self.buffers[key] = host
            if host.data_ptr() != t.data_ptr():
                self.device = t.device
                host.copy_(t, non_blocking=self.pin)
            moves.append((holder, name, host))
        synchronize()  # the device tensors stay alive until their copies have landed
        for holder, name, host in moves:
            _slot_put(holder, name, host)
        return sum(h.numel() * h.element_size() for _, _, h in moves)

    def restore(self) -> None:
        """Copy the buffers back to the device the state came from (the buffers are kept for
        the next offload)."""
        device = self.device or torch.device("cpu")
        for _, holder, name in _state_slots(self.optimizer):
            moved = _slot_get(holder, name).to(device, non_blocking=self.pin, copy=True)
            _slot_put(holder, name, moved)
