"""Llama config -> ModelSpec."""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import ModelFamily, dense_spec, require_keys, rope_type_of
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
        if rope_type_of(config) != "default":
            raise UserError("Llama rope scaling (llama3 / yarn) is not supported yet")
        return dense_spec(
            self.name,
            config,
            qkv_bias=bool(config.get("attention_bias", False)),
            rope_theta_default=10000.0,
            norm_eps_default=1e-5,
            max_positions_default=4096,
        )
