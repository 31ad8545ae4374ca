"""HF config.json -> ModelSpec per family: Qwen3's fields, defaults and refusals, and specs
written before a field existed still loading."""

from __future__ import annotations

import pytest

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.registry import family_for_architecture
from mindspeed_rl.models.spec import ModelSpec

QWEN3_06B = {  # Qwen3-0.6B's shapes: 16 heads x head_dim 128 = 2048 != hidden 1024, tied
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "vocab_size": 151936,
    "rope_theta": 1000000,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "rms_norm_eps": 1e-6,
}


def _spec(**changes) -> ModelSpec:
    config = {**QWEN3_06B, **changes}
    return family_for_architecture(config["architectures"][0]).spec_from_hf_config(config)


def test_qwen3_spec_reads_head_dim_qk_norm_and_tied_embeddings():
    spec = _spec()
    assert spec.family == "qwen3" and spec.qk_norm and not spec.qkv_bias
    assert spec.head_dim == 128 and spec.hidden_size == 1024 and spec.tie_word_embeddings
    assert spec.rope_theta == 1e6 and spec.max_position_embeddings == 32768


def test_qwen3_head_dim_defaults_to_transformers_128_not_hidden_over_heads():
    config = dict(QWEN3_06B)
    del config["head_dim"]
    spec = family_for_architecture("Qwen3ForCausalLM").spec_from_hf_config(config)
    assert spec.head_dim == 128  # hidden / heads would be 64


def test_qwen3_refusals_are_one_line():
    for changes, needle in (
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, r"rope scaling \(yarn\)"),
    ):
        with pytest.raises(UserError, match=needle) as err:
            _spec(**changes)
        assert "\n" not in str(err.value)
    missing = dict(QWEN3_06B)
    del missing["num_key_value_heads"]
    with pytest.raises(UserError, match="Qwen3 config lacks num_key_value_heads"):
        family_for_architecture("Qwen3ForCausalLM").spec_from_hf_config(missing)


def test_tp_must_divide_the_kv_heads():
    spec = _spec()
    spec.check_parallel(8, 1)
    with pytest.raises(UserError, match=r"TP=16 does not divide the model's KV heads \(8\)"):
        spec.check_parallel(16, 1)


def test_specs_saved_before_qk_norm_existed_load():
    old = _spec().to_dict()
    del old["qk_norm"]
    old["family"] = "qwen2"
    assert ModelSpec.from_dict(old).qk_norm is False


QWEN3_30B_A3B = {  # Qwen3-30B-A3B's shapes
    "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}


def test_qwen3_moe_spec_and_total_params():
    from mindspeed_rl.plan.memory import total_params

    spec = family_for_architecture("Qwen3MoeForCausalLM").spec_from_hf_config(QWEN3_30B_A3B)
    assert (spec.family, spec.num_experts, spec.moe_topk, spec.moe_ffn_hidden_size) == (
        "qwen3_moe",
        128,
        8,
        768,
    )
    assert spec.qk_norm and spec.norm_topk_prob and spec.head_dim == 128
    # Qwen3-30B-A3B's model card: 30.5B parameters.
    assert round(total_params(spec) / 1e9, 1) == 30.5
    # transformers >= 5 saves the expert count as num_local_experts.
    saved = {k: v for k, v in QWEN3_30B_A3B.items() if k != "num_experts"}
    saved["num_local_experts"] = 128
    assert family_for_architecture("Qwen3MoeForCausalLM").spec_from_hf_config(saved) == spec


def test_qwen3_moe_refusals():
    family = family_for_architecture("Qwen3MoeForCausalLM")
    for changes, needle in (
        ({"mlp_only_layers": [0]}, "every layer must be sparse"),
        ({"decoder_sparse_step": 2}, "every layer must be sparse"),
        ({"num_experts_per_tok": 200}, "num_experts_per_tok=200 must be between 1 and"),
    ):
        with pytest.raises(UserError, match=needle) as err:
            family.spec_from_hf_config({**QWEN3_30B_A3B, **changes})
        assert "\n" not in str(err.value)
    spec = family.spec_from_hf_config(QWEN3_30B_A3B)
    with pytest.raises(UserError, match="TP=3 does not divide the model's attention heads"):
        spec.check_parallel(3, 1)
    spec.check_parallel(4, 1)  # forward passes split the experts' 768 over TP4
    with pytest.raises(UserError, match="model.sequence_parallel=true"):
        spec.check_trainable(2, sequence_parallel=False)
    spec.check_trainable(2, sequence_parallel=True)
    spec.check_trainable(1, sequence_parallel=False)


def test_expert_parallel_size_is_checked_against_the_experts():
    moe = family_for_architecture("Qwen3MoeForCausalLM").spec_from_hf_config(QWEN3_30B_A3B)
    moe.check_parallel(1, 1, ep=8)  # 128 experts, 16 per EP rank
    with pytest.raises(UserError, match="EP=3 does not divide the model's 128 experts") as err:
        moe.check_parallel(1, 1, ep=3)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="EP=2 needs an MoE model"):
        _spec().check_parallel(1, 1, ep=2)
