"""Qwen2 config -> ModelSpec. Qwen2 always has a bias on q/k/v and none elsewhere."""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import ModelFamily, require_keys, rope_theta_of
from mindspeed_rl.models.spec import ModelSpec

_REQUIRED = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)


class Qwen2Family(ModelFamily):
    name = "qwen2"
    architectures = ("Qwen2ForCausalLM",)

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        require_keys(config, _REQUIRED, "Qwen2 config")
        if config.get("use_sliding_window"):
            raise UserError("Qwen2 with use_sliding_window=true is not supported")
        heads = config["num_attention_heads"]
        return ModelSpec(
            family=self.name,
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=heads,
            num_kv_heads=config["num_key_value_heads"],
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            ffn_hidden_size=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            max_position_embeddings=config.get("max_position_embeddings", 32768),
            rope_theta=rope_theta_of(config, 1000000.0),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=True,
        )
