"""Every shipped GRPO preset composes into the typed config and passes its checks."""

from __future__ import annotations

import pytest

from mindspeed_rl.config.grpo import GRPOConfig, load_config
from mindspeed_rl.errors import UserError
from tests.conftest import REPO_ROOT

PRESETS = sorted(p.stem for p in (REPO_ROOT / "configs").glob("grpo_*.yaml"))
SPEC_HEADS = {  # (heads, KV heads, FFN) of the models the presets name, from their configs
    "models/SmolLM2-135M-Instruct": (9, 3, 1536),
    "models/Qwen2.5-0.5B": (14, 2, 4864),
    "models/Qwen2.5-7B": (28, 4, 18944),
    "models/Qwen2.5-32B": (40, 8, 27648),
    "models/Qwen3-8B": (32, 8, 12288),
    "models/Qwen3-30B-A3B": (32, 4, 768),  # FFN: one expert's width
}


def test_presets_exist():
    assert {"grpo_smollm2_cpu", "grpo_qwen25_0.5b", "grpo_qwen25_7b", "grpo_qwen25_32b",
            "grpo_qwen3_8b", "grpo_qwen3_30b_a3b"} <= set(PRESETS)  # fmt: skip


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_validates(name):
    cfg = load_config(name)
    assert isinstance(cfg, GRPOConfig)
    cfg.validate(check_files=False)
    heads, kv, ffn = SPEC_HEADS[cfg.model.hf_dir]
    for size in (heads, kv, ffn):
        assert size % cfg.model.tp == 0, f"{name}: TP={cfg.model.tp} does not divide {size}"
    assert cfg.logging.dir == cfg.trainer.output_dir


def test_overrides_reach_any_field_and_unknown_keys_fail():
    cfg = load_config(
        "grpo_smollm2_cpu", ["trainer.export_hf=false", "optim.lr=3e-6", "model=qwen25_0.5b"]
    )
    assert cfg.trainer.export_hf is False and cfg.optim.lr == 3e-6
    assert cfg.model.hf_dir == "models/Qwen2.5-0.5B"
    with pytest.raises(UserError, match="unknown config key optim.lrr"):
        load_config("grpo_smollm2_cpu", ["optim.lrr=1"])
    with pytest.raises(UserError, match="trainer.iterations must be an integer"):
        load_config("grpo_smollm2_cpu", ["trainer.iterations=abc"])
    with pytest.raises(UserError, match="no config 'grpo_nope'"):
        load_config("grpo_nope")
    with pytest.raises(UserError, match="infer_tp=4 must divide resources.devices_per_node=2"):
        load_config("grpo_smollm2_cpu", ["rollout.infer_tp=4"]).validate(check_files=False)


def test_infer_tp_must_split_the_heads(smollm2_dir):
    # SmolLM2-135M: 9 heads, 3 KV heads. vLLM splits heads evenly and replicates KV heads
    # when TP is a multiple of their count: TP3 works, TP2 does not.
    with pytest.raises(UserError, match="cannot split 9 attention heads / 3 KV heads"):
        load_config("grpo_smollm2_cpu", ["rollout.infer_tp=2"]).validate()
    cfg = load_config("grpo_smollm2_cpu", ["rollout.infer_tp=3", "resources.devices_per_node=3",
                                           "data.prompts_per_iteration=12",
                                           "data.train_prefix=nowhere/train"])  # fmt: skip
    with pytest.raises(UserError, match="data.train_prefix: no preprocessed dataset"):
        cfg.validate()  # past the heads check, on to the data files


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["trainer.micro_batch_size=3"], "not a multiple of data-parallel size"),
        (["trainer.mini_batch_size=7"], "does not divide the batch"),
        (["resources.devices_per_node=3", "model.tp=2"], "not a multiple of model.tp"),
        (["sampling.n=1", "trainer.micro_batch_size=4"], "needs sampling.n >= 2"),
        (["model.ep=4"], "model.ep=4 must divide the data-parallel size 2"),
    ],
)
def test_inconsistent_combinations_are_refused(overrides, needle):
    cfg = load_config("grpo_smollm2_cpu", overrides)
    with pytest.raises(UserError, match=needle):
        cfg.validate(check_files=False)
