"""Llama config -> ModelSpec."""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import ModelFamily, require_keys, rope_theta_of
from mindspeed_rl.models.spec import ModelSpec

_REQUIRED = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


class LlamaFamily(ModelFamily):
    name = "llama"
    architectures = ("LlamaForCausalLM",)

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        require_keys(config, _REQUIRED, "Llama config")
        if config.get("mlp_bias"):
            raise UserError("Llama with mlp_bias=true is not supported (no bias in gate/up/down)")
        if (config.get("rope_scaling") or {}).get("rope_type", "default") != "default" or (
            config.get("rope_parameters") or {}
        ).get("rope_type", "default") != "default":
            raise UserError("Llama rope scaling (llama3 / yarn) is not supported yet")
        heads = config["num_attention_heads"]
        return ModelSpec(
            family=self.name,
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            ffn_hidden_size=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            max_position_embeddings=config.get("max_position_embeddings", 4096),
            rope_theta=rope_theta_of(config, 10000.0),
            norm_eps=float(config.get("rms_norm_eps", 1e-5)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=bool(config.get("attention_bias", False)),
        )
