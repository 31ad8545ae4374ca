"""Model-parallel state (TP / PP / DP groups) on top of the default process group."""

from __future__ import annotations

import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel

from mindspeed_rl.accelerator import init_distributed


def initialize_model_parallel(
    tp: int, pp: int, seed: int = 1234, vpp: int = 1, ep: int = 1
) -> None:
    """Join the default group (env:// rendezvous) and build Megatron's TP/PP/DP groups.

    ``vpp`` > 1: that many model chunks per pipeline rank (interleaved schedule). ``ep`` > 1:
    MoE experts split over groups of ``ep`` data-parallel ranks (experts keep the attention's
    TP). ``seed`` seeds the per-TP-rank RNG streams Megatron's layers draw from.
    """
    init_distributed()
    if dist.get_world_size() % (tp * pp * ep):
        raise ValueError(
            f"world size {dist.get_world_size()} is not a multiple of TP*PP*EP={tp * pp * ep}"
        )
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tp,
            pipeline_model_parallel_size=pp,
            virtual_pipeline_model_parallel_size=vpp if vpp > 1 else None,
            expert_model_parallel_size=ep,
        )
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy_model_parallel() -> None:
    """Tear down Megatron's groups and the default group (end of a worker's life).

    Shut a vLLM engine down first: its teardown destroys the default group as well.
    """
    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
