"""HF <-> Megatron tensor layouts for dense Llama-like decoders, per layer and per TP rank.

Megatron fuses q/k/v into one column-parallel ``linear_qkv`` whose rows are grouped by KV
head: for each query group, its ``heads_per_group`` query heads, then its key head, then its
value head. A TP rank holds a contiguous run of whole groups. ``linear_fc1`` fuses gate and
up; each TP rank holds ``[gate_r; up_r]``, its own slice of both. Row-parallel layers
(``linear_proj``, ``linear_fc2``) split along the input dimension. Per-head q/k norms
(Qwen3) have width ``head_dim`` and are shared by every head, so every TP rank holds them
whole. The vocabulary is padded with zero rows to a multiple of ``divisible_by * TP``.

These functions are pure: the converter, the resharder and the tests all use them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from mindspeed_rl.models.family import ModelFamily
from mindspeed_rl.models.spec import ModelSpec

# Megatron parameter names, relative to ``decoder.layers.{j}.`` (j: index within the stage).
QKV_W = "self_attention.linear_qkv.weight"
QKV_B = "self_attention.linear_qkv.bias"
PROJ_W = "self_attention.linear_proj.weight"
FC1_W = "mlp.linear_fc1.weight"
FC2_W = "mlp.linear_fc2.weight"
INPUT_NORM = "input_layernorm.weight"
PRE_MLP_NORM = "pre_mlp_layernorm.weight"
Q_NORM = "self_attention.q_layernorm.weight"
K_NORM = "self_attention.k_layernorm.weight"

# MoE layers (megatron-core's MoE layer, SequentialMLP experts): a replicated router and, per
# expert, a TP-split [gate_r; up_r] / down pair laid out like the dense MLP's.
ROUTER_W = "mlp.router.weight"
EXPERT_FC1_W = "mlp.experts.local_experts.{e}.linear_fc1.weight"
EXPERT_FC2_W = "mlp.experts.local_experts.{e}.linear_fc2.weight"

EMBEDDING = "embedding.word_embeddings.weight"
FINAL_NORM = "decoder.final_layernorm.weight"
OUTPUT_LAYER = "output_layer.weight"

# How each per-layer Megatron tensor is split across TP ranks: the dim, or None if replicated.
LAYER_TP_DIM: dict[str, int | None] = {
    QKV_W: 0,
    QKV_B: 0,
    PROJ_W: 1,
    FC1_W: 0,
    FC2_W: 1,
    INPUT_NORM: None,
    PRE_MLP_NORM: None,
    Q_NORM: None,
    K_NORM: None,
}


_LOCAL_EXPERT = re.compile(r"(mlp\.experts\.local_experts\.)(\d+)(\.)")


def shift_expert(key: str, offset: int) -> str:
    """``key`` with its local expert index ``j`` renamed ``j + offset`` (other keys as they
    are): checkpoints hold every expert under its global index, an expert-parallel rank
    ``r`` holds experts ``[r * n, (r + 1) * n)`` as local ``0 .. n - 1``."""
    if not offset:
        return key
    return _LOCAL_EXPERT.sub(lambda m: f"{m[1]}{int(m[2]) + offset}{m[3]}", key, count=1)


def is_expert_key(key: str) -> bool:
    return _LOCAL_EXPERT.search(key) is not None


def layer_tp_dims(spec: ModelSpec) -> dict[str, int | None]:
    """:data:`LAYER_TP_DIM` for ``spec``'s layers: with experts, the router and each expert's
    two matrices take the dense MLP's place."""
    if not spec.is_moe:
        return LAYER_TP_DIM
    dims = {k: v for k, v in LAYER_TP_DIM.items() if k not in (FC1_W, FC2_W)}
    dims[ROUTER_W] = None
    for e in range(spec.num_experts):
        dims[EXPERT_FC1_W.format(e=e)] = 0
        dims[EXPERT_FC2_W.format(e=e)] = 1
    return dims


def layer_prefix(local_index: int) -> str:
    return f"decoder.layers.{local_index}."


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Full q/k/v projections (weights ``[out, H]`` or biases ``[out]``) -> Megatron order."""
    groups, hd = spec.num_kv_heads, spec.head_dim
    tail = q.shape[1:]
    q_G = q.reshape(groups, spec.heads_per_group * hd, *tail)
    k_G = k.reshape(groups, hd, *tail)
    v_G = v.reshape(groups, hd, *tail)
    return torch.cat([q_G, k_G, v_G], dim=1).reshape(-1, *tail)


def unfuse_qkv(
    qkv: torch.Tensor, spec: ModelSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fuse_qkv` for a full (TP-merged) fused tensor."""
    groups, hd, hpg = spec.num_kv_heads, spec.head_dim, spec.heads_per_group
    tail = qkv.shape[1:]
    qkv_G = qkv.reshape(groups, (hpg + 2) * hd, *tail)
    q, k, v = torch.split(qkv_G, [hpg * hd, hd, hd], dim=1)
    return (
        q.reshape(-1, *tail).contiguous(),
        k.reshape(-1, *tail).contiguous(),
        v.reshape(-1, *tail).contiguous(),
    )


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor, tp: int) -> list[torch.Tensor]:
    """Per-TP-rank ``linear_fc1`` shards ``[gate_r; up_r]``."""
    return [torch.cat([g, u], dim=0) for g, u in zip(gate.chunk(tp), up.chunk(tp))]


def unfuse_gate_up(fc1_shards: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fuse_gate_up`: full gate and up from the TP shards."""
    halves = [shard.chunk(2, dim=0) for shard in fc1_shards]
    gate = torch.cat([h[0] for h in halves], dim=0)
    up = torch.cat([h[1] for h in halves], dim=0)
    return gate, up


def hf_layer_to_mcore(
    family: ModelFamily,
    spec: ModelSpec,
    layer: int,
    get: Callable[[str], torch.Tensor],
    tp: int,
) -> list[dict[str, torch.Tensor]]:
    """One HF decoder layer (read through ``get(name)``) -> per-TP-rank Megatron tensors."""
    n = family.layer_names
    i = layer
    qkv_w = fuse_qkv(
        get(f"{n.q.format(i=i)}.weight"),
        get(f"{n.k.format(i=i)}.weight"),
        get(f"{n.v.format(i=i)}.weight"),
        spec,
    )
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]
    per_rank = {
        QKV_W: qkv_w.chunk(tp, dim=0),
        PROJ_W: get(n.o.format(i=i)).chunk(tp, dim=1),
    }
    if spec.is_moe:
        for e in range(spec.num_experts):
            gate, up = get(n.expert_gate.format(i=i, e=e)), get(n.expert_up.format(i=i, e=e))
            per_rank[EXPERT_FC1_W.format(e=e)] = fuse_gate_up(gate, up, tp)
            per_rank[EXPERT_FC2_W.format(e=e)] = get(n.expert_down.format(i=i, e=e)).chunk(
                tp, dim=1
            )
    else:
        per_rank[FC1_W] = fuse_gate_up(get(n.gate.format(i=i)), get(n.up.format(i=i)), tp)
        per_rank[FC2_W] = get(n.down.format(i=i)).chunk(tp, dim=1)
    if spec.qkv_bias:
        qkv_b = fuse_qkv(
            get(f"{n.q.format(i=i)}.bias"),
            get(f"{n.k.format(i=i)}.bias"),
            get(f"{n.v.format(i=i)}.bias"),
            spec,
        )
        per_rank[QKV_B] = qkv_b.chunk(tp, dim=0)
    replicated = {
        INPUT_NORM: get(n.input_norm.format(i=i)),
        PRE_MLP_NORM: get(n.post_attn_norm.format(i=i)),
    }
    if spec.qk_norm:
        replicated[Q_NORM] = get(n.q_norm.format(i=i))
        replicated[K_NORM] = get(n.k_norm.format(i=i))
    if spec.is_moe:
        replicated[ROUTER_W] = get(n.router.format(i=i))
    for r in range(tp):
        for name, parts in per_rank.items():
            shards[r][name] = parts[r].clone()
        for name, tensor in replicated.items():
            shards[r][name] = tensor.clone()
    return shards


def mcore_layer_to_hf(
    family: ModelFamily,
    spec: ModelSpec,
    layer: int,
    shards: list[dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Per-TP-rank Megatron tensors of one layer -> HF tensors named for global ``layer``."""
    n = family.layer_names
    i = layer
    out: dict[str, torch.Tensor] = {}
    q, k, v = unfuse_qkv(torch.cat([s[QKV_W] for s in shards], dim=0), spec)
    out[f"{n.q.format(i=i)}.weight"] = q
    out[f"{n.k.format(i=i)}.weight"] = k
    out[f"{n.v.format(i=i)}.weight"] = v
    if spec.qkv_bias:
        qb, kb, vb = unfuse_qkv(torch.cat([s[QKV_B] for s in shards], dim=0), spec)
        out[f"{n.q.format(i=i)}.bias"] = qb
        out[f"{n.k.format(i=i)}.bias"] = kb
        out[f"{n.v.format(i=i)}.bias"] = vb
    out[n.o.format(i=i)] = torch.cat([s[PROJ_W] for s in shards], dim=1)
    if spec.is_moe:
        out[n.router.format(i=i)] = shards[0][ROUTER_W]
        for e in range(spec.num_experts):
            gate, up = unfuse_gate_up([s[EXPERT_FC1_W.format(e=e)] for s in shards])
            out[n.expert_gate.format(i=i, e=e)] = gate
            out[n.expert_up.format(i=i, e=e)] = up
            down = torch.cat([s[EXPERT_FC2_W.format(e=e)] for s in shards], dim=1)
            out[n.expert_down.format(i=i, e=e)] = down
    else:
        gate, up = unfuse_gate_up([s[FC1_W] for s in shards])
        out[n.gate.format(i=i)] = gate
        out[n.up.format(i=i)] = up
        out[n.down.format(i=i)] = torch.cat([s[FC2_W] for s in shards], dim=1)
    out[n.input_norm.format(i=i)] = shards[0][INPUT_NORM]
    out[n.post_attn_norm.format(i=i)] = shards[0][PRE_MLP_NORM]
    if spec.qk_norm:
        out[n.q_norm.format(i=i)] = shards[0][Q_NORM]
        out[n.k_norm.format(i=i)] = shards[0][K_NORM]
    return out


def expected_hf_shapes(family: ModelFamily, spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Shape of every HF tensor the config implies, to catch config / weight mismatches."""
    n, g = family.layer_names, family.global_names
    h, hd = spec.hidden_size, spec.head_dim
    q_out, kv_out = spec.num_attention_heads * hd, spec.num_kv_heads * hd
    shapes: dict[str, tuple[int, ...]] = {
        g.embedding: (spec.vocab_size, h),
        g.final_norm: (h,),
    }
    if not spec.tie_word_embeddings:
        shapes[g.lm_head] = (spec.vocab_size, h)
    for i in range(spec.num_layers):
        for proj, out in ((n.q, q_out), (n.k, kv_out), (n.v, kv_out)):
            shapes[f"{proj.format(i=i)}.weight"] = (out, h)
            if spec.qkv_bias:
                shapes[f"{proj.format(i=i)}.bias"] = (out,)
        shapes[n.o.format(i=i)] = (h, q_out)
        if spec.is_moe:
            f = spec.moe_ffn_hidden_size
            shapes[n.router.format(i=i)] = (spec.num_experts, h)
            for e in range(spec.num_experts):
                shapes[n.expert_gate.format(i=i, e=e)] = (f, h)
                shapes[n.expert_up.format(i=i, e=e)] = (f, h)
                shapes[n.expert_down.format(i=i, e=e)] = (h, f)
        else:
            shapes[n.gate.format(i=i)] = (spec.ffn_hidden_size, h)
            shapes[n.up.format(i=i)] = (spec.ffn_hidden_size, h)
            shapes[n.down.format(i=i)] = (h, spec.ffn_hidden_size)
        shapes[n.input_norm.format(i=i)] = (h,)
        shapes[n.post_attn_norm.format(i=i)] = (h,)
        if spec.qk_norm:
            shapes[n.q_norm.format(i=i)] = (hd,)
            shapes[n.k_norm.format(i=i)] = (hd,)
    return shapes


def pad_vocab(weight: torch.Tensor, padded_rows: int) -> torch.Tensor:
    """Append zero rows so the embedding / output layer has ``padded_rows`` rows."""
    extra = padded_rows - weight.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad {weight.shape[0]} vocab rows down to {padded_rows}")
    if extra == 0:
        return weight
    return torch.cat([weight, weight.new_zeros(extra, *weight.shape[1:])], dim=0)


def split_vocab(weight: torch.Tensor, padded_rows: int, tp: int) -> list[torch.Tensor]:
    """Pad, then split the vocabulary rows across TP ranks."""
    return [part.clone() for part in pad_vocab(weight, padded_rows).chunk(tp, dim=0)]


def merge_vocab(shards: list[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """Inverse of :func:`split_vocab`: concatenate and drop the padding rows."""
    return torch.cat(shards, dim=0)[:vocab_size].contiguous()
