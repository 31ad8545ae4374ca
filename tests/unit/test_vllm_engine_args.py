"""The arguments the hybrid engine builds vLLM with, for the accelerator layouts the presets
use (checked against the pinned vLLM's own EngineArgs, without building an engine)."""

from __future__ import annotations

import pytest

from mindspeed_rl.rollout.base import RolloutConfig
from mindspeed_rl.rollout.vllm_engine import llm_kwargs


@pytest.mark.parametrize("infer_tp", [2, 4])
def test_inference_tp_on_a_device_turns_custom_all_reduce_off(infer_tp):
    # Ray shows each actor one device; vLLM's custom all-reduce would index the other TP ranks'
    # devices through that one-entry CUDA_VISIBLE_DEVICES and fail while the engine builds.
    kwargs = llm_kwargs(RolloutConfig(infer_tp=infer_tp, dtype="bf16"), "m", on_device=True)
    assert kwargs["distributed_executor_backend"] == "external_launcher"
    assert kwargs["disable_custom_all_reduce"] is True
    assert kwargs["enable_sleep_mode"] is True
    assert kwargs["tensor_parallel_size"] == infer_tp


def test_one_rank_engines_keep_vllms_defaults():
    kwargs = llm_kwargs(RolloutConfig(infer_tp=1), "m", on_device=True)
    assert "distributed_executor_backend" not in kwargs
    assert "disable_custom_all_reduce" not in kwargs


def test_every_argument_is_one_of_vllms():
    from vllm.engine.arg_utils import EngineArgs

    for infer_tp in (1, 2):
        kwargs = llm_kwargs(RolloutConfig(infer_tp=infer_tp), "m", on_device=False)
        args = EngineArgs(**kwargs)  # a misspelt or removed argument raises TypeError here
        assert args.tensor_parallel_size == infer_tp
    assert args.disable_custom_all_reduce is True
