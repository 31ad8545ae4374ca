"""Qwen2 config -> ModelSpec. Qwen2 always has a bias on q/k/v and none elsewhere."""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import QWEN_REQUIRED_KEYS, ModelFamily, dense_spec, require_keys
from mindspeed_rl.models.spec import ModelSpec


class Qwen2Family(ModelFamily):
    name = "qwen2"
    architectures = ("Qwen2ForCausalLM",)

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        require_keys(config, QWEN_REQUIRED_KEYS, "Qwen2 config")
        if config.get("use_sliding_window"):
            raise UserError("Qwen2 with use_sliding_window=true is not supported")
        return dense_spec(
            self.name,
            config,
            qkv_bias=True,
            rope_theta_default=1000000.0,
            norm_eps_default=1e-6,
            max_positions_default=32768,
        )
