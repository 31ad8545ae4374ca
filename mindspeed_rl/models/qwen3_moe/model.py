"""Qwen3-MoE config -> ModelSpec.

Qwen3-MoE is Qwen3's attention (per-head q/k RMSNorm, no QKV bias, explicit head_dim) with
every decoder layer's MLP replaced by ``num_experts`` SwiGLU experts of width
``moe_intermediate_size``, a linear router (``mlp.gate``) and top-``num_experts_per_tok``
routing, renormalised when ``norm_topk_prob``; there is no shared expert. On the Megatron side
it is megatron-core's MoE layer (router + SequentialMLP experts) without auxiliary loss: the
released checkpoints' router is trained, and an RL update has no load-balancing term.
"""

from __future__ import annotations

from dataclasses import replace

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import (
    QWEN_REQUIRED_KEYS,
    ModelFamily,
    dense_spec,
    require_keys,
    rope_type_of,
)
from mindspeed_rl.models.spec import ModelSpec

_REQUIRED = (*QWEN_REQUIRED_KEYS, "num_experts_per_tok", "moe_intermediate_size")


class Qwen3MoeFamily(ModelFamily):
    name = "qwen3_moe"
    architectures = ("Qwen3MoeForCausalLM",)

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        """The :class:`ModelSpec` of a Qwen3-MoE config.json; refuses dense layers mixed in
        (``mlp_only_layers``, ``decoder_sparse_step`` != 1), sliding windows and scaled RoPE."""
        require_keys(config, _REQUIRED, "Qwen3-MoE config")
        # Released checkpoints say num_experts; transformers >= 5 saves num_local_experts.
        experts = config.get("num_experts") or config.get("num_local_experts")
        if not experts:
            raise UserError(
                "Qwen3-MoE config lacks num_experts (or num_local_experts); "
                "is it a complete HF config.json?"
            )
        if config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) != 1:
            raise UserError(
                "Qwen3-MoE with dense layers (mlp_only_layers / decoder_sparse_step != 1) is not "
                "supported; every layer must be sparse, as in the released checkpoints"
            )
        if config.get("use_sliding_window"):
            raise UserError(
                "Qwen3-MoE with use_sliding_window=true is not supported; set it to false"
            )
        if rope_type_of(config) != "default":
            raise UserError(
                f"Qwen3-MoE rope scaling ({rope_type_of(config)}) is not supported yet; "
                "remove rope_scaling from config.json to train at the native context length"
            )
        experts, topk = int(experts), int(config["num_experts_per_tok"])
        if not 1 <= topk <= experts:
            raise UserError(
                f"Qwen3-MoE config: num_experts_per_tok={topk} must be between 1 and "
                f"num_experts={experts}"
            )
        dense = dense_spec(
            self.name,
            config,
            qkv_bias=bool(config.get("attention_bias", False)),
            rope_theta_default=10000.0,
            norm_eps_default=1e-6,
            max_positions_default=32768,
            qk_norm=True,  # Qwen3MoeConfig has no head_dim default: hidden / heads
        )
        return replace(
            dense,
            num_experts=experts,
            moe_topk=topk,
            moe_ffn_hidden_size=int(config["moe_intermediate_size"]),
            # transformers' Qwen3MoeConfig default.
            norm_topk_prob=bool(config.get("norm_topk_prob", False)),
        )
