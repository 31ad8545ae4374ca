"""The actor trains through megatron-core's DDP, optimizer and schedules, and the layout does
not change the result: 3 optimizer steps on one batch give the same losses, grad norms and
final weights at TP2, PP2 (1F1B), PP2 x 2 virtual stages (interleaved), DP2 with the
distributed optimizer and TP2 x DP2 as on one rank. A run whose data-parallel gradient
reduction is switched off must not match (the comparison can fail)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks

# 8 samples, prompts and responses of different lengths; two share a prompt.
PROMPTS = [[5, 17, 33, 99], [9, 8, 7], [5, 17, 33, 99], [40, 41, 42, 43, 44], [7, 7],
           [100, 3, 2], [61, 62, 63, 64], [11, 12, 13]]  # fmt: skip
RESPONSES = [[120, 7, 8, 200, 3, 41], [6, 5, 4], [64, 65, 66, 67, 2], [1, 2], [3, 4, 5, 6, 7],
             [8, 9, 10, 11], [12], [14, 15, 16, 17, 18, 19]]  # fmt: skip
ADVANTAGES = [1.0, -0.5, 0.8, -1.2, 0.3, 0.0, 1.5, -0.7]
STEPS = 3


def _train_worker(rank: int, world: int, ckpt: str, out: str, layout: dict) -> None:
    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.resharding import MegatronToHF
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks, unwrap
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    tp, pp, vpp = layout["tp"], layout["pp"], layout.get("vpp", 1)
    initialize_model_parallel(tp, pp, vpp=vpp, ep=layout.get("ep", 1))
    dtype = mf.DTYPES[layout.get("dtype", "fp32")]
    distributed = layout.get("distopt", False)
    from mindspeed_rl.models.builder import Recompute

    chunks, meta, iteration = build_chunks(
        ckpt, dtype, Recompute(layout.get("recompute", "")),
        ddp=DDPSettings(use_distributed_optimizer=distributed,
                        overlap_grad_reduce=layout.get("overlap", False)),
        sequence_parallel=layout.get("sp", False),
    )  # fmt: skip
    configure_chunks(chunks, overlap_grad_reduce=layout.get("overlap", False))
    if layout.get("no_qk_norm_reduce"):
        # finalize_model_grads sums q/k norm gradients over TP only when the config says so.
        unwrap(chunks[0]).config.qk_layernorm = False
    if layout.get("sp_unreduced"):  # norm weight gradients not summed over TP
        for chunk in chunks:
            for param in chunk.parameters():
                param.sequence_parallel = False
    if layout.get("leak"):  # packed sequences attend across their bounds: one causal block
        import mindspeed_rl.models.attention as attention

        whole = attention.causal_varlen_attention
        attention.causal_varlen_attention = lambda q, k, v, cu, longest, scale: whole(
            q, k, v, cu[[0, -1]], int(cu[-1]), scale
        )
    if layout.get("broken"):
        for chunk in chunks:  # no data-parallel gradient reduction at all
            chunk.finish_grad_sync = lambda force_all_reduce=False: None
    # eps 1e-6, not 1e-8: parameters whose true gradient is zero (the key bias: softmax
    # ignores a constant added to every key) get rounding noise that depends on the reduction
    # order, and Adam turns noise of 1e-9 into a full step when eps is far below it.
    lr = layout.get("lr", 1e-3)
    adam = opt.AdamSettings(lr, 0.01, (0.9, 0.999), 1e-6, 1.0, distributed)
    optimizer = opt.build_optimizer(chunks, adam, dtype)
    if layout.get("masters_from_checkpoint"):
        from mindspeed_rl.training.model import checkpoint_states

        states = checkpoint_states(chunks, Path(ckpt), iteration, meta)
        assert opt.init_main_params(optimizer, chunks, states) > 0
    loss_config = GRPOLossConfig(kl_coef=0.0, loss_agg_mode=layout.get("agg", "token-mean"))
    actor = MegatronActor(
        chunks, meta, optimizer, loss_config, 1.0, micro_batch_size=2,
        max_tokens_per_micro_batch=layout.get("max_tokens", 0),
        pack_prompts=layout.get("pack", False), logits_chunk_tokens=layout.get("chunk", 0),
    )  # fmt: skip
    # Fixed old log-probs near the random model's (-log 250 = -5.5): the ratio, the clipping
    # and so the loss move with the weights from step to step.
    old = [[-5.0 - 0.1 * j for j in range(len(r))] for r in RESPONSES]
    samples = Batch.from_columns(PROMPTS, RESPONSES, advantages=ADVANTAGES, old_logprobs=old)
    from mindspeed_rl.training import checkpoint

    if layout.get("resume"):  # a training-state checkpoint saved at any layout
        checkpoint.load(Path(layout["resume"]), chunks, optimizer, meta)
    steps = []
    for step in range(1, layout.get("steps", STEPS) + 1):
        steps.append(actor.update(samples, [list(range(len(PROMPTS)))], lr=lr))
        if layout.get("save_after") == step:
            checkpoint.save(Path(out) / "checkpoint", chunks, optimizer, meta)
    resharder = MegatronToHF([unwrap(c) for c in chunks], meta, bucket_mb=64, dtype=torch.float32)
    weights = {name: t.clone() for name, t in resharder.iter_weights()}
    if rank == 0:
        torch.save(weights, Path(out) / "weights.pt")
    report = {"steps": steps, "optimizer_bytes": opt.state_bytes(optimizer)}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


def _train(tmp_path: Path, tiny_dir: Path, **layout) -> dict:
    tp, pp = layout["tp"], layout["pp"]
    world = tp * pp * layout.get("dp", 1)
    name = "-".join(f"{k}{v}" for k, v in sorted(layout.items()) if k != "resume")
    name += "-resumed" if "resume" in layout else ""
    tmp_path.mkdir(parents=True, exist_ok=True)
    ckpt = tmp_path / f"mcore-tp{tp}-pp{pp}"
    if not ckpt.exists():
        hf_to_mcore(tiny_dir, ckpt, tp=tp, pp=pp)
    out = tmp_path / name
    out.mkdir()
    run_ranks(_train_worker, world, str(ckpt), str(out), layout)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
    reporting = [r["steps"] for r in reports if r["steps"][0]]
    return {
        "out": out,
        "loss": [s["actor/loss"] for s in reporting[0]],
        "grad_norm": [s["actor/grad_norm"] for s in reporting[0]],
        "weights": torch.load(out / "weights.pt"),
        "optimizer_bytes": [r["optimizer_bytes"] for r in reports],
        "reporting": reporting,
    }


def _max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for key in ("loss", "grad_norm"):
        for x, y in zip(a[key], b[key], strict=True):
            worst = max(worst, abs(x - y) / max(abs(y), 1e-12))
    diff_sq = sum((a["weights"][n] - w).pow(2).sum() for n, w in b["weights"].items())
    norm_sq = sum(w.pow(2).sum() for w in b["weights"].values())
    return max(worst, (diff_sq / norm_sq).sqrt().item())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_qwen2_dir):
    return _train(tmp_path_factory.mktemp("base"), tiny_qwen2_dir, tp=1, pp=1)


def test_baseline_learns(baseline):
    # Every step moved the weights and the loss with them; DP ranks agree on the loss.
    assert len(set(baseline["loss"])) == STEPS
    assert all(n > 0 for n in baseline["grad_norm"])


LAYOUTS = {
    "tp2": dict(tp=2, pp=1),
    "pp2_1f1b": dict(tp=1, pp=2),
    "pp2_vpp2": dict(tp=1, pp=2, vpp=2),
    "dp2_distopt": dict(tp=1, pp=1, dp=2, distopt=True),
    "tp2_dp2_distopt": dict(tp=2, pp=1, dp=2, distopt=True),
    # Sequences packed back to back (THD) in micro-batches of at most 16 tokens, against the
    # padded one-rank baseline.
    "thd": dict(tp=1, pp=1, max_tokens=16),
    "thd_tp2": dict(tp=2, pp=1, max_tokens=16),
    "thd_pp2": dict(tp=1, pp=2, max_tokens=16),
    "thd_dp2": dict(tp=1, pp=1, dp=2, distopt=True, max_tokens=16),
    # Sequence parallelism: activations split along the sequence over TP (our RMSNorm's
    # weight gradients summed over TP; passes padded to a multiple of TP).
    "tp2_sp": dict(tp=2, pp=1, sp=True),
    "thd_tp2_sp": dict(tp=2, pp=1, sp=True, max_tokens=16),
    "tp2_sp_pp2": dict(tp=2, pp=2, sp=True),
    # The GPU presets' training: packed, TP + SP, full activation recompute.
    "thd_tp2_sp_recompute": dict(tp=2, pp=1, sp=True, max_tokens=16, recompute="full"),
    # Logits a few positions at a time, each chunk recomputed in backward: padded rows (2 rows
    # x 2 positions a chunk), THD at TP2 + SP, shared-prompt rows, PP2, and DP2 with gradient
    # reductions overlapping backward (megatron's DDP hook must see the output weight once).
    "chunks": dict(tp=1, pp=1, chunk=4),
    "chunks_thd_tp2_sp": dict(tp=2, pp=1, sp=True, max_tokens=16, chunk=5),
    "chunks_shared_prompt": dict(tp=1, pp=1, pack=True, chunk=3),
    "chunks_pp2": dict(tp=1, pp=2, chunk=3),
    "chunks_dp2_overlap": dict(tp=1, pp=1, dp=2, distopt=True, overlap=True, chunk=4),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_matches_one_rank(tmp_path, tiny_qwen2_dir, baseline, name):
    run = _train(tmp_path, tiny_qwen2_dir, **LAYOUTS[name])
    assert _max_rel_diff(run, baseline) <= 1e-5, name
    # Data-parallel ranks report the same global loss and grad norm.
    for other in run["reporting"][1:]:
        assert [s["actor/loss"] for s in other] == pytest.approx(run["loss"], rel=1e-6)


def test_broken_gradient_reduction_is_caught(tmp_path, tiny_qwen2_dir, baseline):
    run = _train(tmp_path, tiny_qwen2_dir, tp=1, pp=1, dp=2, distopt=True, broken=True)
    assert _max_rel_diff(run, baseline) > 1e-3


def test_packed_sequences_leaking_attention_is_caught(tmp_path, tiny_qwen2_dir, baseline):
    run = _train(tmp_path, tiny_qwen2_dir, tp=1, pp=1, max_tokens=16, leak=True)
    assert _max_rel_diff(run, baseline) > 1e-3


def test_sequence_parallel_norms_unreduced_over_tp_is_caught(tmp_path, tiny_qwen2_dir, baseline):
    # Each TP rank normalises half of the sequence: without the sum over TP every rank's norm
    # weights step on half of their gradient and the ranks' copies drift apart.
    run = _train(tmp_path, tiny_qwen2_dir, tp=2, pp=1, sp=True, sp_unreduced=True)
    assert _max_rel_diff(run, baseline) > 1e-4


def test_distributed_optimizer_shards_state(tmp_path, tiny_qwen2_dir, baseline):
    # fp32 params: Adam's two moments (8 B) + the params it steps (4 B) per parameter, split
    # over the 2 data-parallel ranks without overlap.
    replicated = baseline["optimizer_bytes"][0]
    numel = sum(t.numel() for t in baseline["weights"].values())
    assert replicated >= 12 * numel  # the padded vocabulary rows count too
    run = _train(tmp_path, tiny_qwen2_dir, tp=1, pp=1, dp=2, distopt=True)
    per_rank = run["optimizer_bytes"]
    assert sum(per_rank) == replicated
    assert max(per_rank) <= 0.51 * replicated


def test_bf16_step_follows_fp32(tmp_path, tiny_qwen2_dir, baseline):
    # bf16 params with fp32 main params: the same 3 steps within bf16 rounding (8 mantissa
    # bits: 0.4 % per weight, and a bf16 forward / backward on the way).
    run = _train(tmp_path, tiny_qwen2_dir, tp=1, pp=1, dtype="bf16")
    for name, want in baseline["weights"].items():
        got = run["weights"][name].float()
        assert ((got - want).norm() / want.norm()).item() < 2e-2, name
    assert run["loss"][0] == pytest.approx(baseline["loss"][0], rel=2e-2)


def test_tied_embeddings_at_pp2_match_one_rank(tmp_path, tiny_llama_dir):
    # Llama ties its embeddings: at PP2 the last stage's output-layer copy gets its gradient
    # summed with the embedding's (megatron's embedding group) and counts once in the norm.
    one = _train(tmp_path / "one", tiny_llama_dir, tp=1, pp=1)
    two = _train(tmp_path / "two", tiny_llama_dir, tp=1, pp=2)
    assert _max_rel_diff(two, one) <= 1e-5


def test_qwen3_at_tp2_matches_one_rank(tmp_path, tiny_qwen3_wide_heads_dir):
    # Each TP rank's heads feed the one shared [head_dim] q/k norm weight: its gradient is
    # summed over TP. Without that sum the ranks' copies drift apart and the run differs.
    one = _train(tmp_path / "one", tiny_qwen3_wide_heads_dir, tp=1, pp=1)
    two = _train(tmp_path / "two", tiny_qwen3_wide_heads_dir, tp=2, pp=1)
    assert len(set(one["loss"])) == STEPS
    assert _max_rel_diff(two, one) <= 1e-5
    q_norm = "model.layers.0.self_attn.q_norm.weight"
    assert one["weights"][q_norm].shape == (64,)
    initial = torch.load(tmp_path / "one" / "mcore-tp1-pp1" / "iter_0000001" / "mp_rank_00"
                         / "model_optim_rng.pt", weights_only=False)["model"]  # fmt: skip
    assert not torch.equal(
        initial["decoder.layers.0.self_attention.q_layernorm.weight"], one["weights"][q_norm]
    )
    unreduced = _train(
        tmp_path / "three", tiny_qwen3_wide_heads_dir, tp=2, pp=1, no_qk_norm_reduce=True
    )
    print(f"qwen3 TP2 vs TP1: {_max_rel_diff(two, one):.3g}, unreduced q/k norm grads: "
          f"{_max_rel_diff(unreduced, one):.3g}")  # fmt: skip
    assert _max_rel_diff(unreduced, one) > 1e-4


def test_qwen3_moe_at_tp2_with_sequence_parallelism_matches_one_rank(tmp_path, tiny_qwen3_moe_dir):
    # megatron-core trains MoE layers at TP > 1 only with sequence parallelism: TP2 + SP (the
    # experts' FFNs split over TP, tokens routed from each rank's slice of the sequence), padded
    # and packed, equal one rank.
    one = _train(tmp_path / "one", tiny_qwen3_moe_dir, tp=1, pp=1)
    for max_tokens in (0, 12):
        two = _train(tmp_path / f"two{max_tokens}", tiny_qwen3_moe_dir, tp=2, pp=1, sp=True,
                     max_tokens=max_tokens)  # fmt: skip
        print(f"qwen3-moe TP2+SP (max_tokens={max_tokens}) vs one rank: "
              f"{_max_rel_diff(two, one):.3g}")  # fmt: skip
        assert _max_rel_diff(two, one) <= 1e-5


@pytest.mark.parametrize(
    "distopt,max_tokens", [(False, 0), (True, 0), (True, 12)], ids=["replicated", "distopt", "thd"]
)
def test_qwen3_moe_expert_parallel_matches_one_rank(
    tmp_path, tiny_qwen3_moe_dir, distopt, max_tokens
):
    # EP2 x DP2: each rank holds 2 of the 4 experts; tokens reach them through the all-to-all
    # dispatch and their gradients come back. 3 steps equal one rank's, and the checkpoint
    # layout a rank saves holds all 4 experts under their global names.
    one = _train(tmp_path / "one", tiny_qwen3_moe_dir, tp=1, pp=1)
    assert len(set(one["loss"])) == STEPS
    # With a token budget (THD) the two ranks pack different numbers of micro-batches; the
    # one with fewer runs fillers so that the all-to-alls still meet.
    two = _train(
        tmp_path / "two", tiny_qwen3_moe_dir, tp=1, pp=1, dp=2, ep=2, distopt=distopt,
        save_after=STEPS, max_tokens=max_tokens,
    )  # fmt: skip
    print(
        f"qwen3-moe EP2 (distopt={distopt}, max_tokens={max_tokens}) vs one rank: {_max_rel_diff(two, one):.3g}"
    )
    assert _max_rel_diff(two, one) <= 1e-5
    stage = _exported(two["out"] / "checkpoint", tmp_path / "plain")
    for e in range(4):
        got = stage[f"decoder.layers.1.mlp.experts.local_experts.{e}.linear_fc2.weight"]
        assert torch.equal(got, two["weights"][f"model.layers.1.mlp.experts.{e}.down_proj.weight"])


def _exported(checkpoint: Path, out: Path) -> dict:
    """The model of a training-state checkpoint, as the one TP1 PP1 rank file mcore2hf reads."""
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.training.checkpoint import export_plain

    export_plain(checkpoint, out, 1)
    return mf.load_rank(out, 1, 0, 0, 1)["model"]


def test_virtual_stages_export_the_plain_layout(tmp_path, tiny_qwen2_dir):
    # With 2 virtual stages each rank trains layers of both plain stages; what mcore2hf reads
    # back is the whole model in the plain layout, equal to a PP1 run's.
    plain = _train(tmp_path / "plain", tiny_qwen2_dir, tp=1, pp=1, save_after=STEPS)
    virtual = _train(tmp_path / "virtual", tiny_qwen2_dir, tp=1, pp=2, vpp=2, save_after=STEPS)
    want = _exported(plain["out"] / "checkpoint", tmp_path / "want")
    got = _exported(virtual["out"] / "checkpoint", tmp_path / "got")
    assert sorted(got) == sorted(want)
    assert any(k.startswith("decoder.layers.3.") for k in got)
    for key, value in want.items():
        assert ((got[key] - value).norm() / value.norm()).item() <= 1e-5, key
