"""Build this rank's Megatron model stage from a checkpoint directory."""

from __future__ import annotations

from pathlib import Path

import torch
from megatron.core import parallel_state

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.errors import UserError
from mindspeed_rl.models.builder import build_gpt_model, load_model_state


def load_megatron_model(
    load_dir: str | Path,
    params_dtype: torch.dtype | None = None,
    recompute: bool = False,
) -> tuple[torch.nn.Module, mf.CheckpointMeta, int]:
    """Model stage for this rank's (TP, PP) position, with its weights, plus meta and iteration.

    The checkpoint's TP/PP must equal the running model-parallel layout.
    """
    load_dir = Path(load_dir)
    iteration, meta = mf.read_meta(load_dir)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if (meta.tp, meta.pp) != (tp, pp):
        raise UserError(
            f"checkpoint {load_dir} is TP={meta.tp} PP={meta.pp} but the run uses TP={tp} "
            f"PP={pp}; convert it again with matching --tp/--pp"
        )
    dtype = params_dtype or mf.DTYPES[meta.params_dtype]
    model = build_gpt_model(meta.spec, meta.padded_vocab_size, dtype, recompute=recompute)
    state = mf.load_rank(
        load_dir,
        iteration,
        parallel_state.get_tensor_model_parallel_rank(),
        parallel_state.get_pipeline_model_parallel_rank(),
        pp,
    )["model"]
    load_model_state(model, {k: v.to(dtype) for k, v in state.items()})
    return model, meta, iteration
