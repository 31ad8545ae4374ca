"""The HF <-> Megatron layout functions against hand-built expectations."""

from __future__ import annotations

import pytest
import torch

from mindspeed_rl.errors import UserError
from mindspeed_rl.models import layout as L
from mindspeed_rl.models.spec import ModelSpec


def _spec(heads=4, kv=2, hd=2) -> ModelSpec:
    return ModelSpec(
        family="qwen2",
        num_layers=2,
        hidden_size=heads * hd,
        num_attention_heads=heads,
        num_kv_heads=kv,
        head_dim=hd,
        ffn_hidden_size=6,
        vocab_size=10,
        max_position_embeddings=32,
        rope_theta=1e4,
        norm_eps=1e-6,
        tie_word_embeddings=False,
        qkv_bias=True,
    )


def test_fuse_qkv_groups_query_heads_with_their_kv_head():
    spec = _spec(heads=4, kv=2, hd=1)
    q = torch.tensor([10.0, 11.0, 12.0, 13.0])  # 4 query heads, head_dim 1
    k = torch.tensor([20.0, 21.0])
    v = torch.tensor([30.0, 31.0])
    fused = L.fuse_qkv(q, k, v, spec)
    # group 0: q0 q1 k0 v0, group 1: q2 q3 k1 v1
    assert fused.tolist() == [10, 11, 20, 30, 12, 13, 21, 31]
    q2, k2, v2 = L.unfuse_qkv(fused, spec)
    assert torch.equal(q2, q) and torch.equal(k2, k) and torch.equal(v2, v)


def test_fuse_qkv_weights_roundtrip_and_tp_split_keeps_whole_groups():
    spec = _spec(heads=4, kv=2, hd=2)
    q, k, v = torch.randn(8, 8), torch.randn(4, 8), torch.randn(4, 8)
    fused = L.fuse_qkv(q, k, v, spec)
    assert fused.shape == (16, 8)
    rank0, rank1 = fused.chunk(2)
    # rank 0 holds group 0: query heads 0-1, key head 0, value head 0
    assert torch.equal(rank0, torch.cat([q[:4], k[:2], v[:2]]))
    assert torch.equal(rank1, torch.cat([q[4:], k[2:], v[2:]]))
    assert all(torch.equal(a, b) for a, b in zip(L.unfuse_qkv(fused, spec), (q, k, v)))


def test_gate_up_shards_hold_own_slice_of_both():
    gate = torch.arange(6.0).reshape(6, 1)
    up = torch.arange(100.0, 106.0).reshape(6, 1)
    shards = L.fuse_gate_up(gate, up, tp=2)
    assert shards[0].flatten().tolist() == [0, 1, 2, 100, 101, 102]
    assert shards[1].flatten().tolist() == [3, 4, 5, 103, 104, 105]
    g, u = L.unfuse_gate_up(shards)
    assert torch.equal(g, gate) and torch.equal(u, up)


def test_vocab_padding_and_merge():
    spec = _spec()
    assert spec.padded_vocab_size(tp=2, divisible_by=4) == 16
    assert spec.padded_vocab_size(tp=1, divisible_by=1) == 10
    w = torch.randn(10, 3)
    parts = L.split_vocab(w, 16, tp=2)
    assert [p.shape[0] for p in parts] == [8, 8]
    assert torch.equal(parts[1][2:], torch.zeros(6, 3))
    assert torch.equal(L.merge_vocab(parts, 10), w)


def test_check_parallel_names_the_conflict():
    spec = _spec(heads=4, kv=2)
    spec.check_parallel(2, 2)
    with pytest.raises(UserError, match="attention heads"):
        spec.check_parallel(3, 1)
    with pytest.raises(UserError, match="KV heads"):
        spec.check_parallel(4, 1)
    with pytest.raises(UserError, match="larger than the model's layer count"):
        spec.check_parallel(1, 3)
