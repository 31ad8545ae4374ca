"""The memory plan: each term against hand-computed values for Qwen2.5-7B / 32B configs, the
verdicts and knobs, the config.json fallback, the CLI exit codes and docs/plan.md."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mindspeed_rl.config.grpo import load_config
from mindspeed_rl.errors import UserError
from mindspeed_rl.plan import GB, check_fits, plan_config, plan_memory
from mindspeed_rl.plan import memory as mem
from mindspeed_rl.plan.inputs import hf_config_path, load_spec
from mindspeed_rl.plan.report import knobs, render_text, training_knobs, verdict
from tests.conftest import REPO_ROOT

QWEN25 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 131072,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "vocab_size": 152064,
}
QWEN25_7B = {
    **QWEN25,
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
}
QWEN25_32B = {
    **QWEN25,
    "hidden_size": 5120,
    "num_hidden_layers": 64,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "intermediate_size": 27648,
    "rms_norm_eps": 1e-5,
}


def _hf_dir(tmp_path: Path, name: str, config: dict) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


@pytest.fixture
def qwen7b_dir(tmp_path) -> Path:
    return _hf_dir(tmp_path, "Qwen2.5-7B", QWEN25_7B)


@pytest.fixture
def qwen32b_dir(tmp_path) -> Path:
    return _hf_dir(tmp_path, "Qwen2.5-32B", QWEN25_32B)


def _input(hf_dir: Path, preset: str, gb: float, *overrides: str) -> mem.PlanInput:
    from mindspeed_rl.plan.inputs import plan_input

    cfg = load_config(preset, [f"model.hf_dir={hf_dir}", *overrides])
    cfg.validate(check_files=False)
    return plan_input(cfg, gb, read_dataset=False)


# -- Qwen2.5-7B, hand-computed ---------------------------------------------------------------

# One decoder layer of Qwen2.5-7B: q (3584x3584) + k, v (512x3584 each) + their biases,
# o (3584x3584), gate/up/down (3 x 3584x18944), two RMSNorm weights.
LAYER_7B_SPLIT = 3584 * (3584 + 2 * 512) + 3584 * 3584 + (3584 + 2 * 512) + 3 * 3584 * 18944
NORMS_7B = 2 * 3584
EMBED_7B = 152064 * 3584  # 152064 is a multiple of 128 * 4: no padding at TP4


def test_qwen7b_whole_model_params(qwen7b_dir):
    spec = load_spec(qwen7b_dir / "config.json")
    assert LAYER_7B_SPLIT == 233_050_624
    assert mem.total_params(spec) == 28 * (LAYER_7B_SPLIT + NORMS_7B) + 2 * EMBED_7B + 3584
    assert mem.total_params(spec) == 7_615_616_512  # Qwen2.5-7B's published size, 7.61B


def test_qwen7b_tp4_training_terms(qwen7b_dir):
    """The 7B preset's layout: TP4 x DP2, bf16, micro-batch 8 of 1024 + 2048 tokens; without
    its recompute and distributed optimizer first (the terms at their plainest)."""
    preset = _input(qwen7b_dir, "grpo_qwen25_7b", 64)
    x = _input(qwen7b_dir, "grpo_qwen25_7b", 64, "model.recompute_granularity=",
               "optim.use_distributed_optimizer=false", "trainer.max_tokens_per_micro_batch=0",
               "trainer.micro_batch_size=8", "model.sequence_parallel=false")  # fmt: skip
    shard = 28 * (LAYER_7B_SPLIT // 4 + NORMS_7B) + 2 * EMBED_7B // 4 + 3584
    assert shard == 1_904_057_344
    assert mem.param_bytes(x, 0) == 2 * shard == 3_808_114_688  # bf16 params of the TP4 shard
    assert mem.grad_bytes(x, 0) == 4 * shard  # fp32 grad buffer
    assert mem.grad_bytes(replace(x, grad_reduce_in_fp32=False), 0) == 2 * shard
    assert mem.optimizer_bytes(x, 0) == 12 * shard  # exp_avg + exp_avg_sq + fp32 main
    assert mem.optimizer_bytes(preset, 0) == 6 * shard  # the preset shards them over DP2
    assert mem.optimizer_bytes(replace(x, params_dtype="fp32"), 0) == 8 * shard

    # Activations: s = 3072, b = 8, h = 3584, a = 28, t = 4, f = 18944, 16-bit.
    s, b, h, a, t = 3072, 8, 3584, 28, 4
    mlp = 8 * 18944 / 3584  # unfused SwiGLU: 2f-wide fc1 output, silu(gate), product
    per_layer = s * b * h * (10 + (8 + mlp) / t) + 6 * a * s * s * b / t
    assert per_layer == pytest.approx(5_158_993_920)
    assert mem.stage_activation_bytes(x) == pytest.approx(28 * per_layer)
    selective = s * b * h * (10 + (8 + mlp) / t)
    assert mem.stage_activation_bytes(replace(x, recompute="selective")) == pytest.approx(
        28 * selective
    )
    full = replace(x, recompute="full", recompute_method="uniform", recompute_num_layers=1)
    assert mem.stage_activation_bytes(full) == pytest.approx(28 * 2 * s * b * h + per_layer)
    block = replace(full, recompute_method="block", recompute_num_layers=20)
    assert mem.stage_activation_bytes(block) == pytest.approx(20 * 2 * s * b * h + 8 * per_layer)
    # Sequence parallelism splits the 10*s*b*h outside the TP regions and the layer inputs
    # full recompute keeps over TP as well.
    sp_layer = s * b * h * (10 / t + (8 + mlp) / t) + 6 * a * s * s * b / t
    assert mem.stage_activation_bytes(replace(x, sequence_parallel=True)) == pytest.approx(
        28 * sp_layer
    )
    assert mem.stage_activation_bytes(replace(full, sequence_parallel=True)) == pytest.approx(
        28 * 2 * s * b * h / t + sp_layer
    )

    # Logits window: 2048 response tokens x 8 x vocab / TP4 x (bf16 + 4 fp32 tensors)...
    whole = replace(x, logits_chunk=0)
    assert mem.logits_bytes(whole) == 2048 * 8 * (152064 // 4) * 18
    # ...or one chunk of trainer.logits_chunk_tokens (1024: 128 positions of the 8 rows).
    assert x.logits_chunk == 1024
    assert mem.logits_bytes(x) == 1024 * (152064 // 4) * 18
    assert mem.logits_bytes(replace(x, logits_chunk=5)) == 8 * (152064 // 4) * 18  # a row each
    assert any("16384 response tokens, 1024 at a time" in t.detail for t in
               mem.training_phase(x, x.pp - 1).terms)  # fmt: skip


def test_token_budget_is_one_packed_row_without_attention_scores(qwen7b_dir):
    """The 7B preset packs 16384 tokens per pass: activations of one 16384-token row with no
    S x S softmax term (varlen kernels keep none), and logits for at most 16384 positions."""
    x = _input(qwen7b_dir, "grpo_qwen25_7b", 64, "model.recompute_granularity=")
    assert x.max_tokens == 16384 and x.sequence_parallel  # SP: everything split over TP4
    assert mem.micro_batch_shape(x) == (16384, 1)
    s, h, t = 16384, 3584, 4
    mlp = 8 * 18944 / 3584
    assert mem.stage_activation_bytes(x) == pytest.approx(28 * s * h * (10 + 8 + mlp) / t)
    assert mem.logits_bytes(x) == 1024 * (152064 // 4) * 18  # a chunk at a time
    assert mem.logits_bytes(replace(x, logits_chunk=0)) == 16384 * (152064 // 4) * 18
    # A sample longer than the budget gets a pass of its own: the shape follows it.
    assert mem.micro_batch_shape(replace(x, max_tokens=1000)) == (x.seq_tokens, 1)
    # The smaller-pass knob halves the budget instead of counting rows.
    knobs = [name for name, _, _ in training_knobs(replace(x, recompute="full"))]
    assert any(k.startswith("trainer.max_tokens_per_micro_batch=") for k in knobs)


def test_qwen7b_rollout_terms(qwen7b_dir):
    x = _input(qwen7b_dir, "grpo_qwen25_7b", 64, "rollout.infer_tp=1")  # the preset uses 2
    whole = 7_615_616_512
    assert mem.vllm_weight_bytes(x) == 2 * whole  # bf16, infer TP1
    assert mem.kv_bytes_per_token(x) == 2 * 28 * 4 * 128 * 2
    # 128 prompts x 16 samples over 8 engines, each sequence up to 3072 tokens.
    assert mem.concurrent_sequences(x) == 256
    assert mem.kv_needed_bytes(x) == 256 * 3072 * 57344
    # vLLM preallocates what 0.6 of the 64 GB leaves after its weights.
    assert mem.kv_cache_bytes(x) == pytest.approx(0.6 * 64 * GB - 2 * whole)
    assert mem.kv_cache_bytes(replace(x, device_memory_gb=0)) == 256 * 3072 * 57344
    tp4 = replace(x, infer_tp=4)
    assert mem.vllm_weight_bytes(tp4) == 2 * (
        28 * (LAYER_7B_SPLIT // 4 + NORMS_7B) + 2 * EMBED_7B // 4 + 3584
    )
    assert mem.kv_bytes_per_token(tp4) == 2 * 28 * 1 * 128 * 2
    assert mem.kv_bytes_per_token(replace(x, infer_tp=8)) == 2 * 28 * 1 * 128 * 2  # replicated


def test_rollout_offloads_grads_and_optimizer_on_accelerators(qwen7b_dir):
    x = _input(qwen7b_dir, "grpo_qwen25_7b", 64)
    rollout = mem.rollout_phase(x, 0)
    where = {t.name: t.where for t in rollout.terms}
    assert where == {
        "parameters": "device",
        "gradients": "freed",
        "optimizer state": "host",
        "vLLM weights": "device",
        "KV cache": "device",
        "weight-sync bucket": "device",
    }
    assert rollout.peak == pytest.approx(
        mem.param_bytes(x, 0) + 0.6 * 64 * GB + 512 * 2**20
    )  # params + vLLM's whole share + one bucket
    training = mem.training_phase(x, 0)
    # Sleep level 2: the weights are dropped, not kept on the host (the sync rewrites them).
    assert {t.name: t.where for t in training.terms}["vLLM weights"] == "freed"
    offload = mem.rollout_phase(replace(x, offload_params=True), 0)
    assert offload.peak == pytest.approx(rollout.peak - mem.param_bytes(x, 0))


def test_cpu_keeps_everything_resident(qwen7b_dir):
    x = replace(_input(qwen7b_dir, "grpo_qwen25_7b", 0), on_accelerator=False, cpu_kv_cache_gb=2)
    rollout = mem.rollout_phase(x, 0)
    assert {t.name: t.where for t in rollout.terms}["optimizer state"] == "device"
    assert mem.kv_cache_bytes(x) == 2 * GB
    training = mem.training_phase(x, 0)
    assert all(t.on_device for t in training.terms)


# -- Qwen2.5-32B, pipeline parallel ----------------------------------------------------------

LAYER_32B_SPLIT = 5120 * (5120 + 2 * 1024) + 5120 * 5120 + (5120 + 2 * 1024) + 3 * 5120 * 27648
NORMS_32B = 2 * 5120


def test_qwen32b_stages(qwen32b_dir):
    """TP8 x PP2: 32 layers a stage; the vocabulary pads to a multiple of 128 * 8 = 1024."""
    x = _input(qwen32b_dir, "grpo_qwen25_32b", 64)
    spec = x.spec
    padded = 149 * 1024
    assert spec.padded_vocab_size(8, 128) == padded
    layers = 32 * (LAYER_32B_SPLIT // 8 + NORMS_32B)
    assert mem.stage_params(spec, 8, 2, 0) == layers + padded * 5120 // 8
    assert mem.stage_params(spec, 8, 2, 1) == layers + padded * 5120 // 8 + 5120
    assert mem.total_params(spec) == 64 * (LAYER_32B_SPLIT + NORMS_32B) + 2 * 152064 * 5120 + 5120
    # 1F1B: the first stage holds PP = 2 micro-batches, the last one.
    assert mem.microbatches_in_flight(x, 0) == 2 and mem.microbatches_in_flight(x, 1) == 1
    # Interleaved, 2 chunks a stage: ((2-0-1)*2 + (2-1)*2 + 1) / 2 = 2.5 stage-loads.
    assert mem.microbatches_in_flight(replace(x, vpp=2), 0) == 2.5
    assert mem.vllm_weight_bytes(replace(x, infer_tp=1)) == 2 * mem.total_params(spec)


def test_qwen32b_on_64gb_at_infer_tp1_does_not_fit_and_names_vllm_weights(qwen32b_dir):
    # The whole model in every rank's engine (infer TP1) cannot fit; the preset's TP4 does.
    assert plan_memory(_input(qwen32b_dir, "grpo_qwen25_32b", 64)).fits
    plan = plan_memory(_input(qwen32b_dir, "grpo_qwen25_32b", 64, "rollout.infer_tp=1"))
    assert not plan.fits
    rollout = next(p for p in plan.phases if p.name == "rollout")
    assert rollout.largest.name == "vLLM weights"
    assert rollout.largest.bytes == pytest.approx(61.0 * GB, abs=0.05 * GB)
    line = verdict(plan)
    assert line.startswith("does not fit on 64 GB") and "largest: vLLM weights 61.0 GB" in line
    assert "exceed rollout.gpu_memory_utilization" in line
    found = {k.override.split("=")[0]: k for k in knobs(plan)}
    infer = found["rollout.infer_tp"]
    assert infer.fixes and infer.after < infer.before
    tp8 = plan_memory(replace(plan.input, infer_tp=8))
    assert not tp8.problems
    assert next(p for p in tp8.phases if p.name == "rollout").peak < 64 * GB
    assert mem.vllm_weight_bytes(tp8.input) == 2 * (
        64 * (LAYER_32B_SPLIT // 8 + NORMS_32B) + 2 * 152064 * 5120 // 8 + 5120
    )


def test_knobs_that_fix_training_make_it_fit(qwen7b_dir):
    # The preset recomputes and shards the optimizer; without them (and with padded rows of 8
    # samples) it does not fit.
    plan = plan_memory(
        _input(qwen7b_dir, "grpo_qwen25_7b", 64, "model.recompute_granularity=",
               "optim.use_distributed_optimizer=false", "trainer.max_tokens_per_micro_batch=0",
               "trainer.micro_batch_size=8", "model.sequence_parallel=false")
    )  # fmt: skip
    assert not plan.fits
    training = plan.phases[0]
    assert training.largest.name == "activations"
    fixes = [k for k in knobs(plan) if k.fixes]
    assert {k.override for k in fixes} >= {"model.recompute_granularity=full"}
    for k in fixes:
        assert k.plan.fits, k.text()
    text = render_text(plan, "grpo_qwen25_7b")
    assert "model.recompute_granularity=full: training 167.1 -> 42.0 GB (-125.1 GB)" in text


def test_pack_prompts_is_one_long_row(qwen7b_dir):
    x = replace(
        _input(qwen7b_dir, "grpo_qwen25_7b", 64, "trainer.max_tokens_per_micro_batch=0",
               "trainer.micro_batch_size=8"),
        pack_prompts=True, prompt_tokens=100,
    )  # fmt: skip
    assert mem.micro_batch_shape(x) == (100 + 8 * 2048, 1)


# -- Qwen3-8B, hand-computed -----------------------------------------------------------------

QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "vocab_size": 151936,
    "rope_theta": 1000000,
    "tie_word_embeddings": False,
    "attention_bias": False,
}
# q (4096x4096) + k, v (1024x4096 each), o, gate/up/down (3 x 4096x12288), no bias; two
# RMSNorm weights of 4096 and the q/k norms of head_dim 128.
LAYER_8B_SPLIT = 4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 12288
NORMS_8B = 2 * 4096 + 2 * 128


def test_qwen3_8b_params_and_preset_plan():
    spec = load_spec(REPO_ROOT / "configs" / "model" / "qwen3_8b.config.json")
    assert (spec.family, spec.head_dim, spec.qk_norm, spec.qkv_bias) == ("qwen3", 128, True, False)
    assert mem.layer_params(spec, 4) == LAYER_8B_SPLIT // 4 + NORMS_8B
    total = mem.total_params(spec)
    assert total == 36 * (LAYER_8B_SPLIT + NORMS_8B) + 2 * 151936 * 4096 + 4096
    # Qwen3-8B's model card: 8.2B parameters, 6.95B without the embeddings.
    assert total == 8_190_735_360 and total - 2 * 151936 * 4096 == 6_946_075_648
    cfg = load_config("grpo_qwen3_8b")
    if (REPO_ROOT / cfg.model.hf_dir / "config.json").is_file():
        pytest.skip("models/Qwen3-8B is on this machine")
    plan = plan_config(cfg, 64, read_dataset=False)
    assert plan.fits and plan.input.spec == spec
    # bf16 TP4 shard: 36 layers / 4 plus a quarter of each vocab matrix, padded from 151936
    # to a multiple of 128 x TP4 (152064 rows).
    assert spec.padded_vocab_size(4, 128) == 152064
    vocab_shard = 152064 * 4096 // 4
    want = 36 * (LAYER_8B_SPLIT // 4 + NORMS_8B) + 2 * vocab_shard + 4096
    assert mem.param_bytes(plan.input, 0) == 2 * want


# -- inputs ----------------------------------------------------------------------------------


def test_tracked_hf_configs_match_the_published_shapes():
    for name, expected in (
        ("qwen25_7b", QWEN25_7B),
        ("qwen25_32b", QWEN25_32B),
        ("qwen3_8b", QWEN3_8B),
    ):
        tracked = json.loads((REPO_ROOT / "configs" / "model" / f"{name}.config.json").read_text())
        for key, value in expected.items():
            assert tracked[key] == value, (name, key)


def test_absent_model_dir_falls_back_to_the_tracked_config():
    cfg = load_config("grpo_qwen25_7b")
    if (REPO_ROOT / cfg.model.hf_dir / "config.json").is_file():
        pytest.skip("models/Qwen2.5-7B is on this machine")
    assert hf_config_path(cfg.model) == REPO_ROOT / "configs/model/qwen25_7b.config.json"
    plan = plan_config(cfg, 80, read_dataset=False)
    assert plan.input.spec.hidden_size == 3584
    with pytest.raises(UserError, match="model.hf_dir: .* not found"):
        hf_config_path(load_config("grpo_qwen25_7b", ["model.hf_dir=models/nope"]).model)


def test_any_hf_dir_with_only_config_json_plans(qwen32b_dir):
    cfg = load_config("grpo_smollm2_cpu", [f"model.hf_dir={qwen32b_dir}", "model.tp=2"])
    plan = plan_config(cfg, 80, read_dataset=False)
    assert plan.input.spec.num_layers == 64 and plan.input.tp == 2


def test_check_fits_refuses_with_one_line(qwen32b_dir):
    cfg = load_config("grpo_qwen25_32b", [f"model.hf_dir={qwen32b_dir}", "rollout.infer_tp=1"])
    assert cfg.resources.device_memory_gb == 64
    with pytest.raises(UserError) as err:
        check_fits(cfg, "grpo_qwen25_32b")
    assert "\n" not in str(err.value) and "cli/plan.py --config-name grpo_qwen25_32b" in str(
        err.value
    )
    off = load_config(
        "grpo_qwen25_32b",
        [f"model.hf_dir={qwen32b_dir}", "rollout.infer_tp=1", "resources.device_memory_gb=0"],
    )
    assert check_fits(off, "grpo_qwen25_32b") is None


# -- CLI -------------------------------------------------------------------------------------


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_plan_cli_exit_codes(qwen32b_dir, capsys):
    plan_cli = _module(REPO_ROOT / "cli" / "plan.py")
    args = ["--config-name", "grpo_qwen25_32b", f"model.hf_dir={qwen32b_dir}"]
    assert plan_cli.main(args) == 0  # the preset's inference TP4 fits
    assert "fits: peak" in capsys.readouterr().out
    assert plan_cli.main([*args, "rollout.infer_tp=1"]) == 2
    out = capsys.readouterr().out
    assert "does not fit on 64 GB" in out and "rollout.infer_tp=" in out
    assert plan_cli.main(["--config-name", "grpo_smollm2_cpu", "--device-memory-gb", "80"]) == 0
    assert "fits: peak" in capsys.readouterr().out
    for bad in ("-1", "nan", "inf"):
        assert plan_cli.main(["--config-name", "grpo_qwen25_7b", "--device-memory-gb", bad]) == 2
        assert "--device-memory-gb must be a finite number >= 0" in capsys.readouterr().err


def test_train_grpo_check_refuses_what_does_not_fit(qwen32b_dir, capsys):
    train = _module(REPO_ROOT / "cli" / "train_grpo.py")
    args = [
        "--config-name", "grpo_qwen25_32b", "--check", f"model.hf_dir={qwen32b_dir}",
        "data.train_prefix=''", "data.val_prefix=''", "rollout.infer_tp=1", "model.load_dir=''",
    ]  # fmt: skip
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not fit on 64 GB" in err
    assert train.main([*args, "resources.device_memory_gb=0"]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out
    assert ("layout: 16 cuda ranks on 2 nodes: 16 ranks train (TP8 PP2 DP1, distributed optimizer, "
            "full recompute) and generate in turn (16 vllm engines of infer TP1)") in out  # fmt: skip
    split = [*args, "resources.device_memory_gb=0", "resources.rollout_workers=4",
             "algorithm.max_staleness=1"]  # fmt: skip
    assert train.main(split) == 0
    assert (
        "layout: 20 cuda ranks on 2 nodes: 16 ranks train (TP8 PP2 DP1, distributed optimizer, "
        "full recompute); 4 more only generate (4 vllm engines of infer TP1), the next batch "
        "while this one trains (one step off policy)"
    ) in capsys.readouterr().out
    assert (
        train.main(
            [
                "--config-name",
                "grpo_qwen25_32b",
                "--plan",
                f"model.hf_dir={qwen32b_dir}",
                "rollout.infer_tp=1",
            ]
        )
        == 2
    )


# -- docs/plan.md ----------------------------------------------------------------------------


def test_docs_plan_md_is_up_to_date(tmp_path, capsys):
    tool = _module(REPO_ROOT / "tools" / "plan_reference.py")
    doc = REPO_ROOT / "docs" / "plan.md"
    assert doc.is_file(), "docs/plan.md is missing; run `python tools/plan_reference.py`"
    assert doc.read_text() == tool.render(), (
        "docs/plan.md is out of date; run `python tools/plan_reference.py`"
    )
    stale = tmp_path / "plan.md"
    stale.write_text("# old\n")
    assert tool.main(["--check", "--out", str(stale)]) == 1
    assert "python tools/plan_reference.py" in capsys.readouterr().err


# -- Qwen3-30B-A3B (MoE, expert parallel) ----------------------------------------------------


def test_qwen3_30b_a3b_experts_split_over_ep():
    spec = load_spec(REPO_ROOT / "configs" / "model" / "qwen3_30b_a3b.config.json")
    experts_per_layer = 128 * 3 * 2048 * 768
    # EP8: a rank holds 16 of a layer's 128 experts; attention, norms and router stay whole.
    assert mem.layer_params(spec, 1, 1) - mem.layer_params(spec, 1, 8) == experts_per_layer * 7 // 8
    cfg = load_config("grpo_qwen3_30b_a3b")
    if (REPO_ROOT / cfg.model.hf_dir / "config.json").is_file():
        pytest.skip("models/Qwen3-30B-A3B is on this machine")
    plan = plan_config(cfg, 64, read_dataset=False)
    assert plan.fits and plan.input.ep == 8
    # Without EP every rank holds all 128 experts: parameters alone grow by 7/8 of them.
    one = plan_config(load_config("grpo_qwen3_30b_a3b", ["model.ep=1"]), 64, read_dataset=False)
    grown = mem.param_bytes(one.input, 1) - mem.param_bytes(plan.input, 1)
    assert grown == 2 * 24 * experts_per_layer * 7 // 8
    assert not one.fits


def test_checkpoint_size_counts_weights_once_and_the_optimizer_state():
    from mindspeed_rl.config.grpo import load_config
    from mindspeed_rl.plan import plan_config
    from mindspeed_rl.plan.memory import checkpoint_bytes, total_params
    from mindspeed_rl.plan.report import render_text

    for dtype, optimizer_per_param in (("bf16", 12), ("fp32", 8)):
        cfg = load_config("grpo_smollm2_cpu", [f"model.params_dtype={dtype}"])
        plan = plan_config(cfg, read_dataset=False)
        params = total_params(plan.input.spec)
        width = 2 if dtype == "bf16" else 4
        assert checkpoint_bytes(plan.input) == (params * width, params * optimizer_per_param)
        assert "per save on disk" in render_text(plan, "x")


def test_host_memory_of_the_rollout_offload_per_node():
    from mindspeed_rl.plan.memory import optimizer_bytes
    from mindspeed_rl.plan.report import host_line

    plan = plan_config(load_config("grpo_qwen25_7b"), read_dataset=False)
    rollout = next(p for p in plan.phases if p.name == "rollout")
    per_device = optimizer_bytes(plan.input, rollout.stage)
    line = host_line(plan)
    assert f"{per_device / GB:.1f} GB per device offloaded (optimizer state)" in line
    assert f"{8 * per_device / GB:.1f} GB per node of 8" in line
    with_params = plan_config(load_config("grpo_qwen25_7b", ["rollout.offload_params=true"]),
                              read_dataset=False)  # fmt: skip
    assert "(parameters, optimizer state)" in host_line(with_params)
    assert "page-locked" not in host_line(with_params)
    pinned = plan_config(load_config("grpo_qwen25_7b", ["rollout.offload_params=true",
                                                        "rollout.pin_host_memory=true"]),
                         read_dataset=False)  # fmt: skip
    # Only the optimizer state's buffers are kept page-locked (the params move as before).
    assert (f"; {8 * per_device / GB:.1f} GB per node of it page-locked for the whole run"
            in host_line(pinned))  # fmt: skip
    assert host_line(plan_config(load_config("grpo_smollm2_cpu"), read_dataset=False)) is None


def test_generation_only_ranks_split_the_phases(qwen7b_dir):
    """resources.rollout_workers: the training ranks hold no engine, the generation ranks
    nothing but the engine, and each engine samples its share of the batch."""
    x = _input(qwen7b_dir, "grpo_qwen25_7b", 64, "resources.rollout_workers=4",
               "rollout.infer_tp=2")  # fmt: skip
    assert x.rollout_workers == 4
    training = mem.training_phase(x, 0)
    names = [t.name for t in training.terms]
    assert "vLLM weights" not in names and "KV cache" not in names
    assert "weight-send bucket" in names
    rollout = mem.rollout_phase(x, 0)
    assert [t.name for t in rollout.terms] == ["vLLM weights", "KV cache", "weight-receive bucket"]
    assert rollout.peak == pytest.approx(0.6 * 64 * GB + 512 * 2**20)
    # 128 prompts x 16 samples over 4 / 2 = 2 engines (not the 8 training ranks' 4).
    assert mem.concurrent_sequences(x) == 128 * 16 // 2
    hybrid = _input(qwen7b_dir, "grpo_qwen25_7b", 64, "rollout.infer_tp=2")
    # On accelerators the hybrid engine's vLLM is asleep (freed) during training anyway: the
    # training ranks gain nothing but hold the send bucket; the generation ranks gain the
    # whole training state.
    assert training.peak == pytest.approx(mem.training_phase(hybrid, 0).peak + 512 * 2**20)
    assert mem.rollout_phase(hybrid, 0).peak == pytest.approx(
        rollout.peak + mem.param_bytes(hybrid, 0)
    )  # (the optimizer state is on the host either way)
    # No "offload training params" knob for a rank that holds none.
    from mindspeed_rl.plan.report import rollout_knobs

    assert not any("offload" in k for k, _, _ in rollout_knobs(replace(x, device_memory_gb=16)))
