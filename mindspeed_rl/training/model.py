"""The training model of one rank: megatron-core GPTModel chunks, loaded from a Megatron
checkpoint and wrapped in megatron-core's DistributedDataParallel.

A rank holds one chunk per virtual pipeline stage (one chunk without interleaving). Chunk
``v`` of pipeline rank ``p`` holds the global layers ``[(v*PP + p) * n, (v*PP + p + 1) * n)``
with ``n = layers / (PP * V)``, which is megatron-core's interleaved assignment; with V = 1 it
is the plain split. The initial checkpoint (hf2mcore's) is in the plain (V = 1) layout at the
run's TP / PP: each chunk's tensors are looked up in the stage file that holds their global
layer. Training-state checkpoints are megatron-core's (:mod:`mindspeed_rl.training.checkpoint`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

from mindspeed_rl.accelerator import get_accelerator, megatron_device_scope
from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.errors import UserError
from mindspeed_rl.models import layout as L
from mindspeed_rl.models.builder import Recompute, build_gpt_model, load_model_state

_LAYER_KEY = re.compile(r"^decoder\.layers\.(\d+)\.(.*)$")


@dataclass(frozen=True)
class DDPSettings:
    """megatron-core DistributedDataParallel options the trainer exposes."""

    use_distributed_optimizer: bool = False
    overlap_grad_reduce: bool = False
    grad_reduce_in_fp32: bool = True


def chunk_layers(num_layers: int, pp: int, vpp: int, pp_rank: int, vp_stage: int) -> range:
    """Global layer indices of chunk ``vp_stage`` on pipeline rank ``pp_rank``."""
    per = num_layers // (pp * vpp)
    start = (vp_stage * pp + pp_rank) * per
    return range(start, start + per)


def checkpoint_location(key: str, chunk: range, num_layers: int, pp: int) -> tuple[int, str]:
    """(stage, key) in a plain-layout checkpoint of PP ``pp`` for a chunk's state-dict ``key``."""
    per = num_layers // pp
    match = _LAYER_KEY.match(key)
    if match:
        layer = chunk[int(match.group(1))]
        return layer // per, f"{L.layer_prefix(layer % per)}{match.group(2)}"
    if key.startswith("embedding."):
        return 0, key
    return pp - 1, key  # final norm, output layer


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def _expert_offset(meta: mf.CheckpointMeta) -> int:
    """Global index of this rank's first expert (0 without expert parallelism)."""
    ep = parallel_state.get_expert_model_parallel_world_size()
    if not meta.spec.is_moe or ep == 1:
        return 0
    return parallel_state.get_expert_model_parallel_rank() * (meta.spec.num_experts // ep)


def checkpoint_states(
    chunks: list[torch.nn.Module], load_dir: Path, iteration: int, meta: mf.CheckpointMeta
) -> list[dict[str, torch.Tensor]]:
    """For each of this rank's chunks (DDP-wrapped or not), its state dict as the checkpoint
    stores it (the checkpoint's dtype): each chunk's keys are looked up in the stage file that
    holds their global layer."""
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    offset = _expert_offset(meta)
    files: dict[int, dict[str, torch.Tensor]] = {}
    states = []
    for v, chunk in enumerate(chunks):
        model = unwrap(chunk)
        layers = chunk_layers(meta.spec.num_layers, pp, len(chunks), pp_rank, v)
        state = {}
        for key, value in model.state_dict().items():
            if value is None or key.endswith("_extra_state"):
                continue
            stage, source_key = checkpoint_location(
                L.shift_expert(key, offset), layers, meta.spec.num_layers, pp
            )
            if stage not in files:
                files[stage] = mf.load_rank(load_dir, iteration, tp_rank, stage, pp)["model"]
            state[key] = files[stage][source_key]
        states.append(state)
    return states


def load_chunks(
    chunks: list[torch.nn.Module], load_dir: Path, iteration: int, meta: mf.CheckpointMeta
) -> None:
    """Copy a plain-layout checkpoint's tensors into this rank's chunks, in the chunks' dtype."""
    for chunk, state in zip(chunks, checkpoint_states(chunks, load_dir, iteration, meta)):
        model = unwrap(chunk)
        dtypes = {k: v.dtype for k, v in model.state_dict().items() if v is not None}
        load_model_state(model, {k: t.to(dtypes[k]) for k, t in state.items()})


def build_chunks(
    load_dir: str | Path,
    params_dtype: torch.dtype,
    recompute: Recompute | None = None,
    ddp: DDPSettings | None = None,
    sequence_parallel: bool = False,
) -> tuple[list[torch.nn.Module], mf.CheckpointMeta, int]:
    """This rank's model chunks with the checkpoint's weights, on this rank's device.

    ``ddp`` wraps each chunk in megatron-core's DistributedDataParallel (training); None keeps
    bare GPTModels (a frozen reference, inference). The checkpoint's TP/PP must equal the
    running layout; its layers are redistributed over virtual stages as needed.
    ``sequence_parallel`` splits activations along the sequence over TP (no effect at TP1).
    """
    load_dir = Path(load_dir)
    iteration, meta = mf.read_meta(load_dir)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    vpp = parallel_state.get_virtual_pipeline_model_parallel_world_size() or 1
    if (meta.tp, meta.pp) != (tp, pp):
        raise UserError(
            f"checkpoint {load_dir} is TP={meta.tp} PP={meta.pp} but the run uses TP={tp} "
            f"PP={pp}; convert it again with matching --tp/--pp"
        )
    device = get_accelerator().device
    models = []
    with megatron_device_scope():
        for v in range(vpp):
            models.append(
                build_gpt_model(
                    meta.spec,
                    meta.padded_vocab_size,
                    params_dtype,
                    recompute=recompute,
                    vp_stage=v if vpp > 1 else None,
                    sequence_parallel=sequence_parallel,
                )  # fmt: skip
            )
        load_chunks(models, load_dir, iteration, meta)
        chunks: list[torch.nn.Module] = []
        for v, model in enumerate(models):
            model = model.to(device)
            if ddp is not None:
                model = DistributedDataParallel(
                    config=model.config,
                    ddp_config=DistributedDataParallelConfig(
                        grad_reduce_in_fp32=ddp.grad_reduce_in_fp32,
                        overlap_grad_reduce=ddp.overlap_grad_reduce,
                        use_distributed_optimizer=ddp.use_distributed_optimizer,
                    ),
                    module=model,
                    # Later chunks' first buckets are reduced as their backward finishes.
                    disable_bucketing=v > 0,
                )
            chunks.append(model)
    return chunks, meta, iteration


def layer_owner(layer: int, num_layers: int, pp: int, vpp: int) -> tuple[int, int, int]:
    """(pipeline rank, chunk, index within the chunk) holding global ``layer``."""
    per = num_layers // (pp * vpp)
    block = layer // per
    return block % pp, block // pp, layer % per
