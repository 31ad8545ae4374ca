"""The attention kernels of each device: causal attention over sequences packed back to back
(THD: ``[tokens, heads, head_dim]`` with cumulative lengths ``cu_seqlens``) and masked
attention over padded rows.

The choice of kernel lives here alone (the model's core-attention module only calls these):

- NPU, bf16/fp16: ``torch_npu.npu_fusion_attention`` in its TND layout with the lower-right
  causal mode (``sparse_mode=3`` and the 2048 x 2048 compressed mask the kernel asks for).
- CUDA, bf16/fp16: flash-attn's ``flash_attn_varlen_func`` when it is installed, else torch's
  own flash kernel (``torch.nn.attention.varlen.varlen_attn``, torch >= 2.10).
- Everything else (CPU; fp32 anywhere): ``scaled_dot_product_attention`` once per sequence with
  ``is_causal``, which never builds a mask and costs sum(L_i^2), not (sum L_i)^2.

Grouped-query attention never repeats K/V in memory: every kernel above takes fewer K/V heads
than query heads.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F


def varlen_kernel(kind: str, dtype: torch.dtype) -> str:
    """Name of the kernel :func:`causal_varlen_attention` uses on ``kind`` for ``dtype``."""
    half = dtype in (torch.bfloat16, torch.float16)
    if kind == "npu" and half:
        return "npu_fusion_attention"
    if kind == "cuda" and half:
        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attn_varlen"
        if _torch_varlen() is not None:
            return "torch_varlen_attn"
    return "sdpa_per_sequence"


@functools.cache
def _torch_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.cache
def _npu_causal_mask(device: torch.device) -> torch.Tensor:
    # sparse_mode=3 reads causality from this fixed-size upper-triangular mask (True: masked).
    return torch.triu(torch.ones(2048, 2048, dtype=torch.bool, device=device), 1)


def causal_varlen_attention(
    q_THD: torch.Tensor,
    k_TGD: torch.Tensor,
    v_TGD: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    scale: float,
) -> torch.Tensor:
    """Causal attention of each packed sequence over itself only: ``[T, H, D]`` out.

    ``cu_seqlens`` (int32, ``[N + 1]``, on the tensors' device) bounds the N sequences; K/V
    have G heads, G dividing H (grouped-query attention).
    """
    kernel = varlen_kernel(q_THD.device.type, q_THD.dtype)
    if kernel == "npu_fusion_attention":
        import torch_npu  # noqa: F401  (only present on Ascend machines)

        ends = cu_seqlens[1:].tolist()
        return torch_npu.npu_fusion_attention(
            q_THD, k_TGD, v_TGD, q_THD.shape[1], "TND",
            atten_mask=_npu_causal_mask(q_THD.device), scale=scale, sparse_mode=3,
            actual_seq_qlen=ends, actual_seq_kvlen=ends,
        )[0]  # fmt: skip
    if kernel == "flash_attn_varlen":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(
            q_THD, k_TGD, v_TGD, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
            softmax_scale=scale, causal=True,
        )  # fmt: skip
    if kernel == "torch_varlen_attn":
        return _torch_varlen()(
            q_THD, k_TGD, v_TGD, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
            scale=scale, window_size=(-1, 0), enable_gqa=True,
        )  # fmt: skip
    bounds = cu_seqlens.tolist()
    gqa = k_TGD.shape[1] != q_THD.shape[1]
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        # [L, H, D] -> [1, H, L, D]: SDPA's (batch, heads, sequence, dim) layout. The batch
        # dimension matters: torch's CPU flash kernel takes 4-D inputs only, 3-D ones fall
        # back to the math path, which materialises the L x L scores.
        o_1HLD = F.scaled_dot_product_attention(
            q_THD[start:end].transpose(0, 1)[None],
            k_TGD[start:end].transpose(0, 1)[None],
            v_TGD[start:end].transpose(0, 1)[None],
            is_causal=True, scale=scale, enable_gqa=gqa,
        )  # fmt: skip
        outs.append(o_1HLD[0].transpose(0, 1))
    return torch.cat(outs) if outs else q_THD[:0]


def masked_attention(
    q_BHSD: torch.Tensor,
    k_BGSD: torch.Tensor,
    v_BGSD: torch.Tensor,
    blocked_B1SS: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Attention over padded rows with an explicit mask (True where a query may NOT attend,
    Megatron's convention): ``[B, H, S, D]`` out. Every row must allow at least one key."""
    gqa = k_BGSD.shape[1] != q_BHSD.shape[1]
    return F.scaled_dot_product_attention(
        q_BHSD, k_BGSD, v_BGSD, attn_mask=~blocked_B1SS, scale=scale, enable_gqa=gqa
    )
