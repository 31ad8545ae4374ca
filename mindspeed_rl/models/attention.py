"""Core attention for megatron-core's layer spec: packed sequences (THD) and padded rows.

megatron-core's local ``DotProductAttention`` materialises ``[B, H, S, S]`` scores and refuses
``packed_seq_params``; Transformer Engine's handles both but exists on CUDA only. This module
takes the same place in the layer spec (``SelfAttentionSubmodules.core_attention``, the slot
MindSpeed also fills with NPU kernels) and hands the computation to the accelerator layer's
kernels, so one model definition trains packed sequences on CPU, CUDA and NPU.

Inputs are what megatron-core's ``Attention`` passes after RoPE: ``[S, B, H, D]`` query and
``[S, B, G, D]`` key/value for padded rows, or ``[T, H, D]`` / ``[T, G, D]`` with THD
``packed_seq_params`` (megatron-core squeezes the batch dimension and applies RoPE per
sequence from ``cu_seqlens``). G divides H (grouped-query attention, K/V not repeated).
"""

from __future__ import annotations

import math

import torch
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.module import MegatronModule

from mindspeed_rl.accelerator.attention import causal_varlen_attention, masked_attention


class CoreAttention(MegatronModule):
    """Softmax attention with no parameters; the signature is megatron-core's core-attention
    contract (``DotProductAttention``)."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("context parallelism is not supported by mindspeed_rl's attention")
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        if dropout:
            raise ValueError("attention dropout is not supported (RL updates train without it)")
        self.scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type=None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
    ) -> torch.Tensor:
        if attention_bias is not None:
            raise ValueError("attention bias is not supported")
        if packed_seq_params is not None:
            if packed_seq_params.qkv_format != "thd":
                raise ValueError(
                    f"packed sequences must be THD, got {packed_seq_params.qkv_format}"
                )
            # megatron-core reshapes [T, H, D] to [T, 1, H * D] after this returns.
            return causal_varlen_attention(
                query, key, value, packed_seq_params.cu_seqlens_q,
                int(packed_seq_params.max_seqlen_q), self.scale,
            )  # fmt: skip
        if attention_mask is None:
            raise ValueError("padded rows need an attention mask (True where masked)")
        # [S, B, H, D] -> [B, H, S, D] and back to megatron-core's [S, B, H * D].
        q_BHSD, k_BGSD, v_BGSD = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        out_BHSD = masked_attention(q_BHSD, k_BGSD, v_BGSD, attention_mask, self.scale)
        s, b = query.shape[0], query.shape[1]
        return out_BHSD.permute(2, 0, 1, 3).reshape(s, b, -1)


def packed_params(cu_seqlens: torch.Tensor, max_seqlen: int) -> PackedSeqParams:
    """megatron-core's THD description of sequences packed back to back (self-attention:
    queries and keys share the bounds)."""
    return PackedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_kv=cu_seqlens,
        max_seqlen_q=max_seqlen,
        max_seqlen_kv=max_seqlen,
    )
