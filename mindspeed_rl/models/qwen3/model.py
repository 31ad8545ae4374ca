"""Qwen3 config -> ModelSpec.

Qwen3 differs from Qwen2 in three ways that matter here: each head's query and key pass
through an RMSNorm of width ``head_dim`` (``self_attn.q_norm`` / ``k_norm``) before RoPE, the
q/k/v projections have no bias (``attention_bias``, false in every released checkpoint), and
``head_dim`` is its own key (128 in Qwen3-8B / 32B) that need not equal hidden / heads.
"""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import (
    QWEN_REQUIRED_KEYS,
    ModelFamily,
    dense_spec,
    require_keys,
    rope_type_of,
)
from mindspeed_rl.models.spec import ModelSpec

# transformers' Qwen3Config defaults, used when a config.json leaves the key out.
_HEAD_DIM_DEFAULT = 128
_ROPE_THETA_DEFAULT = 10000.0


class Qwen3Family(ModelFamily):
    name = "qwen3"
    architectures = ("Qwen3ForCausalLM",)

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        """The :class:`ModelSpec` of a Qwen3 config.json; refuses what Megatron's dense
        local layer cannot express (sliding-window layers, scaled RoPE)."""
        require_keys(config, QWEN_REQUIRED_KEYS, "Qwen3 config")
        if config.get("use_sliding_window"):
            raise UserError("Qwen3 with use_sliding_window=true is not supported; set it to false")
        if rope_type_of(config) != "default":
            raise UserError(
                f"Qwen3 rope scaling ({rope_type_of(config)}) is not supported yet; "
                "remove rope_scaling from config.json to train at the native context length"
            )
        return dense_spec(
            self.name,
            config,
            qkv_bias=bool(config.get("attention_bias", False)),
            rope_theta_default=_ROPE_THETA_DEFAULT,
            norm_eps_default=1e-6,
            max_positions_default=32768,
            qk_norm=True,
            head_dim_default=_HEAD_DIM_DEFAULT,
        )
