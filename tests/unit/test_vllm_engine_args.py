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
    kwargs = llm_kwargs(RolloutConfig(infer_tp=infer_tp, dtype="bf16"), "m", "cuda")
    assert kwargs["distributed_executor_backend"] == "external_launcher"
    assert kwargs["disable_custom_all_reduce"] is True
    assert kwargs["enable_sleep_mode"] is True
    assert kwargs["tensor_parallel_size"] == infer_tp


def test_one_rank_engines_keep_vllms_defaults():
    kwargs = llm_kwargs(RolloutConfig(infer_tp=1), "m", "cuda")
    assert "distributed_executor_backend" not in kwargs
    assert "disable_custom_all_reduce" not in kwargs
    assert "additional_config" not in kwargs


def test_npu_engines_turn_vllm_ascend_rl_config_on():
    # vllm-ascend refuses wake_up while its FRACTAL_NZ weight layout is on (its default);
    # rl_config.enabled turns it off. Sleep level 1 on NPU, 2 elsewhere.
    from mindspeed_rl.rollout.vllm_engine import sleep_level

    kwargs = llm_kwargs(RolloutConfig(infer_tp=2), "m", "npu")
    assert kwargs["additional_config"] == {"rl_config": {"enabled": True}}
    assert kwargs["enable_sleep_mode"] is True and kwargs["disable_custom_all_reduce"] is True
    assert (sleep_level("npu"), sleep_level("cuda")) == (1, 2)


def test_every_argument_is_one_of_vllms():
    from vllm.engine.arg_utils import EngineArgs

    for infer_tp, kind in ((1, "cpu"), (2, "npu")):
        kwargs = llm_kwargs(RolloutConfig(infer_tp=infer_tp), "m", kind)
        args = EngineArgs(**kwargs)  # a misspelt or removed argument raises TypeError here
        assert args.tensor_parallel_size == infer_tp
    assert args.disable_custom_all_reduce is True


def test_another_vllm_version_is_refused_in_one_line():
    from mindspeed_rl.errors import UserError
    from mindspeed_rl.rollout.vllm_engine import check_vllm_version

    check_vllm_version("0.32.0")
    check_vllm_version("0.32.0+cpu")
    with pytest.raises(UserError, match="vLLM 0.33.1 is installed but the engine is written for"):
        check_vllm_version("0.33.1")
