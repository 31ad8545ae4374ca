"""Start-up checks that read the files a run will use (``--check``)."""

from __future__ import annotations

import pytest

from mindspeed_rl.config.grpo import GRPOConfig
from mindspeed_rl.data.indexed import PromptDataset, write_prompt_dataset
from mindspeed_rl.errors import UserError


def test_the_longest_prompt_must_leave_room_for_the_response(tmp_path, tiny_qwen2_dir):
    prefix = tmp_path / "train"
    write_prompt_dataset(prefix, [([1] * 10, "1"), ([2] * 40, "2"), ([3] * 5, "3")], {})
    cfg = GRPOConfig()
    cfg.model.hf_dir = str(tiny_qwen2_dir)
    cfg.data.train_prefix = str(prefix)
    cfg.data.val_prefix = ""
    cfg.resources.devices_per_node = 1
    cfg.data.prompts_per_iteration = 1
    cfg.sampling.n = 2
    cfg.trainer.micro_batch_size = 1
    cfg.rollout.max_model_len = 64
    cfg.sampling.max_tokens = 24  # 40 + 24 = 64: fits exactly
    cfg.validate(check_files=True)
    cfg.sampling.max_tokens = 25
    with pytest.raises(UserError, match="the longest prompt has 40 tokens.*max_model_len=64"):
        cfg.validate(check_files=True)


def test_prompt_lengths_outlive_their_dataset(tmp_path):
    prefix = tmp_path / "ds"
    write_prompt_dataset(prefix, [([1] * 7, "a")], {})
    lengths = PromptDataset(prefix).prompt_lengths  # the dataset (and its mapping) is gone
    assert int(lengths.max()) == 7


def test_load_dir_must_be_a_checkpoint_of_the_configured_model(
    tmp_path, tiny_qwen2_dir, tiny_llama_dir
):
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    prefix = tmp_path / "train"
    write_prompt_dataset(prefix, [([1] * 10, "1")], {})
    cfg = GRPOConfig()
    cfg.data.train_prefix, cfg.data.val_prefix = str(prefix), ""
    cfg.resources.devices_per_node = 1
    cfg.data.prompts_per_iteration, cfg.sampling.n, cfg.trainer.micro_batch_size = 1, 2, 1
    ckpt = tmp_path / "qwen2_tp1"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    cfg.model.hf_dir, cfg.model.load_dir = str(tiny_qwen2_dir), str(ckpt)
    cfg.validate(check_files=True)
    cfg.model.hf_dir = str(tiny_llama_dir)
    with pytest.raises(
        UserError, match="holds another model than model.hf_dir.*family qwen2 vs llama"
    ):
        cfg.validate(check_files=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("garbage\n")
    cfg.model.hf_dir = str(tiny_qwen2_dir)
    with pytest.raises(UserError, match="should hold an iteration number"):
        cfg.validate(check_files=True)


def test_one_step_off_policy_needs_generation_ranks_and_divisible_engines():
    cfg = GRPOConfig()
    cfg.algorithm.max_staleness = 1
    with pytest.raises(UserError, match="set resources.rollout_workers"):
        cfg.validate(check_files=False)
    cfg.resources.rollout_workers = 3
    cfg.rollout.infer_tp = 2
    with pytest.raises(UserError, match="infer_tp=2 must divide resources.rollout_workers=3"):
        cfg.validate(check_files=False)
    cfg.resources.rollout_workers = 2
    cfg.validate(check_files=False)
    cfg.rollout.engine = "torch"
    with pytest.raises(UserError, match="needs rollout.engine=vllm"):
        cfg.validate(check_files=False)


def test_deeper_staleness_and_negative_generation_ranks_are_refused():
    from mindspeed_rl.config.grpo import AlgorithmConfig, ResourcesConfig

    with pytest.raises(ValueError, match="deeper asynchronous queues are not built"):
        AlgorithmConfig(max_staleness=2)
    with pytest.raises(ValueError, match="rollout_workers must be >= 0"):
        ResourcesConfig(rollout_workers=-1)
