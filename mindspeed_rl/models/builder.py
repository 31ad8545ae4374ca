"""Build megatron-core's GPTModel for a :class:`ModelSpec` with the local layer spec.

The local spec needs neither Transformer Engine nor apex, so the same model runs on CPU,
CUDA and NPU. Call after ``megatron.core.parallel_state.initialize_model_parallel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlock,
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from mindspeed_rl.accelerator import get_accelerator
from mindspeed_rl.models.attention import CoreAttention
from mindspeed_rl.models.norm import RMSNorm
from mindspeed_rl.models.spec import ModelSpec


@dataclass(frozen=True)
class Recompute:
    """Activation recompute, as megatron-core's TransformerConfig takes it."""

    granularity: str = ""
    """"" (none), full or selective."""
    method: str = "uniform"
    """uniform or block (full recompute only)."""
    num_layers: int = 1
    """Layers per checkpointed block (uniform) or checkpointed per stage (block)."""


def transformer_config(
    spec: ModelSpec,
    tp: int,
    pp: int,
    params_dtype: torch.dtype = torch.float32,
    sequence_parallel: bool = False,
    recompute: Recompute | None = None,
    vpp: int = 1,
    ep: int = 1,
) -> TransformerConfig:
    """megatron-core's TransformerConfig for a Llama-like decoder (MoE layers with
    ``spec.num_experts``, split over ``ep`` expert-parallel ranks)."""
    recompute = recompute or Recompute()
    bf16 = params_dtype == torch.bfloat16
    full = recompute.granularity == "full"
    fp16 = params_dtype == torch.float16
    return TransformerConfig(
        **_moe_kwargs(spec, ep),
        num_layers=spec.num_layers,
        hidden_size=spec.hidden_size,
        num_attention_heads=spec.num_attention_heads,
        num_query_groups=spec.num_kv_heads,
        kv_channels=spec.head_dim,
        ffn_hidden_size=spec.ffn_hidden_size,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp if vpp > 1 else None,
        sequence_parallel=sequence_parallel and tp > 1,
        normalization="RMSNorm",
        layernorm_epsilon=spec.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=spec.qkv_bias,
        # Also tells finalize_model_grads to sum the q/k norm gradients over TP: each rank's
        # heads contribute to the one shared [head_dim] weight.
        qk_layernorm=spec.qk_norm,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        # Fused kernels are CUDA-only; the unfused paths compute the same functions.
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        use_cpu_initialization=True,
        params_dtype=params_dtype,
        bf16=bf16,
        fp16=fp16,
        pipeline_dtype=params_dtype,
        attention_softmax_in_fp32=True,
        recompute_granularity=recompute.granularity or None,
        recompute_method=recompute.method if full else None,
        recompute_num_layers=recompute.num_layers if full else None,
        # RL losses are global sums over tokens (or sequences) of a mini-batch: the loss step
        # returns (sum, count) and megatron-core divides the gradients by the count summed
        # over micro-batches and data-parallel ranks (finalize_model_grads).
        calculate_per_token_loss=True,
        # variable_seq_lengths is set per schedule call (training.schedule.run_schedule).
        batch_p2p_comm=get_accelerator().batched_p2p,
        # megatron-core 0.16's default ("full") is the deprecated spelling of "the whole
        # layer" and warns on every build; the empty list means the same (no CUDA graphs here).
        cuda_graph_scope=[],
    )


def _moe_kwargs(spec: ModelSpec, ep: int) -> dict:
    """megatron-core's MoE layer as Qwen3-MoE routes: softmax router, top-k, renormalised
    (Megatron's top-k over logits then softmax) or not (softmax first), dropless, no shared
    expert, no auxiliary or z-loss (an RL update has no load-balancing term)."""
    if not spec.is_moe:
        return {}
    return dict(
        num_moe_experts=spec.num_experts,
        expert_model_parallel_size=ep,
        moe_router_topk=spec.moe_topk,
        moe_ffn_hidden_size=spec.moe_ffn_hidden_size,
        moe_router_score_function="softmax",
        moe_router_pre_softmax=not spec.norm_topk_prob,
        moe_router_load_balancing_type="none",
        moe_aux_loss_coeff=0.0,
        # Routing decisions in fp32 whatever the params dtype: a bf16 tie flips the expert.
        moe_router_dtype="fp32",
        # The all-to-all dispatcher is megatron-core's expert-parallel path; it runs on CPU
        # over gloo with the accelerator layer's CPU meanings (see prepare_for_megatron).
        moe_token_dispatcher_type="alltoall",
        # Grouped GEMM needs Transformer Engine or CUTLASS kernels; SequentialMLP computes the
        # same experts one after another.
        moe_grouped_gemm=False,
        moe_permute_fusion=False,
    )


def layer_spec(spec: ModelSpec) -> ModuleSpec:
    """megatron-core's local layer spec with our core attention (packed THD sequences and
    padded rows, one kernel per device; see :mod:`mindspeed_rl.models.attention`) and our
    RMSNorm (sequence parallelism; see :mod:`mindspeed_rl.models.norm`)."""
    layer = get_gpt_layer_local_spec(
        num_experts=spec.num_experts or None,
        moe_grouped_gemm=False,
        normalization="RMSNorm",
        qk_layernorm=spec.qk_norm,
    )
    sub = layer.submodules
    sub.input_layernorm = RMSNorm
    sub.pre_mlp_layernorm = RMSNorm
    attention = sub.self_attention.submodules
    attention.core_attention = CoreAttention
    if spec.qk_norm:
        head_norm = ModuleSpec(module=RMSNorm, params={"sequence_split": False})
        attention.q_layernorm = head_norm
        attention.k_layernorm = head_norm
    return layer


def block_spec(spec: ModelSpec, config: TransformerConfig, vp_stage: int | None) -> ModuleSpec:
    """The decoder block of this pipeline stage (chunk ``vp_stage``): its layers and our
    RMSNorm as the final norm (megatron-core would pick torch's, which refuses SP)."""
    layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return ModuleSpec(
        module=TransformerBlock,
        submodules=TransformerBlockSubmodules(
            layer_specs=[layer_spec(spec)] * layers, layer_norm=RMSNorm
        ),
    )


def build_gpt_model(
    spec: ModelSpec,
    padded_vocab_size: int,
    params_dtype: torch.dtype = torch.float32,
    max_sequence_length: int | None = None,
    recompute: Recompute | None = None,
    vp_stage: int | None = None,
    sequence_parallel: bool = False,
) -> GPTModel:
    """This rank's pipeline stage (model chunk ``vp_stage`` of it with virtual pipeline
    stages), on the CPU (move it with ``.to(device)``)."""
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    vpp = parallel_state.get_virtual_pipeline_model_parallel_world_size() or 1
    ep = parallel_state.get_expert_model_parallel_world_size()
    config = transformer_config(
        spec, tp, pp, params_dtype, sequence_parallel, recompute=recompute, vpp=vpp, ep=ep
    )
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
    model = GPTModel(
        config=config,
        transformer_layer_spec=block_spec(spec, config, vp_stage),
        vocab_size=padded_vocab_size,
        max_sequence_length=max_sequence_length or spec.max_position_embeddings,
        pre_process=first,
        post_process=last,
        share_embeddings_and_output_weights=spec.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=int(spec.rope_theta),
        vp_stage=vp_stage,
    )
    return model.to(params_dtype)


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a Megatron state dict into ``model``; every parameter must be covered.

    Transformer Engine's ``_extra_state`` entries are optional, since converted checkpoints
    carry none.
    """
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
