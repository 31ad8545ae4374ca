"""Model families: how one HF architecture maps onto megatron-core's GPTModel.

Each family (one folder each) reads its HF config into a :class:`ModelSpec` and names the HF
tensors of a decoder layer. The layout work shared by every dense Llama-like family (fused
QKV with grouped-query attention, fused gate/up, TP splits) lives in
:mod:`mindspeed_rl.models.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.spec import ModelSpec


@dataclass(frozen=True)
class HFLayerNames:
    """HF tensor names of one decoder layer (``{i}`` is the global layer index)."""

    q: str = "model.layers.{i}.self_attn.q_proj"
    k: str = "model.layers.{i}.self_attn.k_proj"
    v: str = "model.layers.{i}.self_attn.v_proj"
    o: str = "model.layers.{i}.self_attn.o_proj.weight"
    gate: str = "model.layers.{i}.mlp.gate_proj.weight"
    up: str = "model.layers.{i}.mlp.up_proj.weight"
    down: str = "model.layers.{i}.mlp.down_proj.weight"
    input_norm: str = "model.layers.{i}.input_layernorm.weight"
    post_attn_norm: str = "model.layers.{i}.post_attention_layernorm.weight"
    q_norm: str = "model.layers.{i}.self_attn.q_norm.weight"
    """Per-head query RMSNorm (families with ``ModelSpec.qk_norm``)."""
    k_norm: str = "model.layers.{i}.self_attn.k_norm.weight"
    router: str = "model.layers.{i}.mlp.gate.weight"
    """MoE families: the router, and expert ``{e}``'s SwiGLU MLP."""
    expert_gate: str = "model.layers.{i}.mlp.experts.{e}.gate_proj.weight"
    expert_up: str = "model.layers.{i}.mlp.experts.{e}.up_proj.weight"
    expert_down: str = "model.layers.{i}.mlp.experts.{e}.down_proj.weight"


@dataclass(frozen=True)
class HFGlobalNames:
    """HF tensor names outside the decoder layers."""

    embedding: str = "model.embed_tokens.weight"
    final_norm: str = "model.norm.weight"
    lm_head: str = "lm_head.weight"


class ModelFamily:
    """Base class of a model family; subclasses set the names and read the config."""

    name: str = ""
    architectures: tuple[str, ...] = ()
    layer_names = HFLayerNames()
    global_names = HFGlobalNames()

    def spec_from_hf_config(self, config: dict) -> ModelSpec:
        raise NotImplementedError

    def hf_config_overrides(self, spec: ModelSpec) -> dict:
        """Keys a saved HF config.json must carry for this family (used on export)."""
        return {}


def rope_theta_of(config: dict, default: float) -> float:
    """RoPE base from either the transformers<5 key or the ``rope_parameters`` dict."""
    params = config.get("rope_parameters") or {}
    return float(params.get("rope_theta", config.get("rope_theta", default)))


def rope_type_of(config: dict) -> str:
    """RoPE scaling type (``default`` when unscaled) from either transformers' key."""
    for key in ("rope_parameters", "rope_scaling"):
        kind = (config.get(key) or {}).get("rope_type", "default")
        if kind != "default":
            return kind
    return "default"


QWEN_REQUIRED_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)
"""The config.json keys the Qwen families (2, 2.5, 3, 3-MoE) read without a default."""


def require_keys(config: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in config]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}; is it a complete HF config.json?")


def dense_spec(
    family: str,
    config: dict,
    *,
    qkv_bias: bool,
    rope_theta_default: float,
    norm_eps_default: float,
    max_positions_default: int,
    qk_norm: bool = False,
    head_dim_default: int | None = None,
) -> ModelSpec:
    """The :class:`ModelSpec` of a Llama-like HF config (shared by the dense families).

    ``head_dim_default`` is the family's HF default when config.json omits ``head_dim``
    (Qwen3's is 128 whatever the hidden size); without one it is hidden / heads.
    """
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or head_dim_default or config["hidden_size"] // heads
    return ModelSpec(
        family=family,
        num_layers=config["num_hidden_layers"],
        hidden_size=config["hidden_size"],
        num_attention_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        ffn_hidden_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        max_position_embeddings=config.get("max_position_embeddings", max_positions_default),
        rope_theta=rope_theta_of(config, rope_theta_default),
        norm_eps=float(config.get("rms_norm_eps", norm_eps_default)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        qk_norm=qk_norm,
    )
