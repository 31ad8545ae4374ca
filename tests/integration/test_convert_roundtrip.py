"""hf2mcore then mcore2hf returns every tensor bit for bit, at every TP/PP."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.checkpoint.convert import hf_to_mcore, mcore_to_hf

LAYOUTS = [(1, 1), (2, 1), (1, 2), (2, 2)]


def _load_all(model_dir) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


# Fixture of each tiny model: Qwen2 (QKV bias), Llama (tied), Qwen3 (q/k norm, untied) and
# Qwen3 with head_dim != hidden / heads and tied embeddings, Qwen3-MoE (router, 4 experts).
FAMILY_DIRS = {
    "qwen2": "tiny_qwen2_dir",
    "llama": "tiny_llama_dir",
    "qwen3": "tiny_qwen3_dir",
    "qwen3_wide_heads": "tiny_qwen3_wide_heads_dir",
    "qwen3_moe": "tiny_qwen3_moe_dir",
}


@pytest.mark.parametrize(("tp", "pp"), LAYOUTS)
@pytest.mark.parametrize("family", list(FAMILY_DIRS))
def test_roundtrip_is_bit_exact(tmp_path, request, family, tp, pp):
    src = request.getfixturevalue(FAMILY_DIRS[family])
    meta = hf_to_mcore(src, tmp_path / "mcore", tp=tp, pp=pp)
    assert meta.padded_vocab_size % tp == 0 and meta.padded_vocab_size > meta.spec.vocab_size
    # A small shard size forces the sharded-output path (index + several files).
    mcore_to_hf(tmp_path / "mcore", tmp_path / "back", max_shard_bytes=1 << 20)
    original, restored = _load_all(src), _load_all(tmp_path / "back")
    assert sorted(restored) == sorted(original)
    for name, tensor in original.items():
        assert restored[name].dtype == tensor.dtype, name
        assert torch.equal(restored[name], tensor), name
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(original)
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["architectures"] == json.loads((src / "config.json").read_text())["architectures"]


def test_layout_on_disk_is_megatron_lm(tmp_path, tiny_qwen2_dir):
    hf_to_mcore(tiny_qwen2_dir, tmp_path / "m", tp=2, pp=2)
    assert (tmp_path / "m" / mf.TRACKER).read_text().strip() == "1"
    for t in range(2):
        for p in range(2):
            assert (
                tmp_path / "m" / "iter_0000001" / f"mp_rank_{t:02d}_{p:03d}" / mf.RANK_FILE
            ).is_file()
    hf_to_mcore(tiny_qwen2_dir, tmp_path / "m1", tp=2, pp=1)
    assert (tmp_path / "m1" / "iter_0000001" / "mp_rank_01" / mf.RANK_FILE).is_file()
    state = torch.load(
        tmp_path / "m" / "iter_0000001" / "mp_rank_01_001" / mf.RANK_FILE, weights_only=True
    )["model"]
    # Last stage, TP rank 1: two local layers, final norm, its half of the padded output layer.
    assert "decoder.layers.1.self_attention.linear_qkv.bias" in state
    assert "decoder.layers.2.self_attention.linear_qkv.weight" not in state
    assert state["output_layer.weight"].shape == (128, 256)
    assert "embedding.word_embeddings.weight" not in state


def test_params_dtype_casts(tmp_path, tiny_llama_dir):
    hf_to_mcore(tiny_llama_dir, tmp_path / "m", tp=1, pp=1, params_dtype="bf16")
    mcore_to_hf(tmp_path / "m", tmp_path / "back")
    restored = _load_all(tmp_path / "back")
    original = _load_all(tiny_llama_dir)
    for name, tensor in original.items():
        assert restored[name].dtype == torch.bfloat16
        assert torch.equal(restored[name], tensor.to(torch.bfloat16)), name
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"


def test_exported_model_loads_in_transformers(tmp_path, tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    hf_to_mcore(tiny_qwen2_dir, tmp_path / "m", tp=2, pp=2)
    mcore_to_hf(tmp_path / "m", tmp_path / "back")
    tokens = torch.tensor([[3, 14, 15, 92, 65]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)(tokens).logits
        b = AutoModelForCausalLM.from_pretrained(tmp_path / "back")(tokens).logits
    assert torch.equal(a, b)


def test_qwen3_norms_land_in_megatron_names(tmp_path, tiny_qwen3_wide_heads_dir):
    # Every TP rank holds the whole [head_dim] q/k norms, under megatron-core's names; the
    # fused QKV of a head_dim-64 model with hidden 128 is (4 + 2 * 2) x 64 rows over TP.
    hf_to_mcore(tiny_qwen3_wide_heads_dir, tmp_path / "m", tp=2, pp=1)
    hf = _load_all(tiny_qwen3_wide_heads_dir)
    for t in range(2):
        state = torch.load(
            tmp_path / "m" / "iter_0000001" / f"mp_rank_{t:02d}" / mf.RANK_FILE,
            weights_only=True,
        )["model"]
        for hf_name, mc_name in (("q_norm", "q_layernorm"), ("k_norm", "k_layernorm")):
            assert torch.equal(
                state[f"decoder.layers.3.self_attention.{mc_name}.weight"],
                hf[f"model.layers.3.self_attn.{hf_name}.weight"],
            )
        assert state["decoder.layers.0.self_attention.linear_qkv.weight"].shape == (256, 128)
        assert state["decoder.layers.0.self_attention.linear_proj.weight"].shape == (128, 128)
        assert "decoder.layers.0.self_attention.linear_qkv.bias" not in state
