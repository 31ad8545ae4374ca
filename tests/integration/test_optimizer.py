"""The actor's AdamW: global grad norm counts each weight once across TP and PP, and bf16
training keeps fp32 master weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks

SEQ = [[5, 17, 33, 99, 120, 7, 8, 200, 3, 41], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]


def _worker(rank: int, world: int, ckpt: str, out: str, tp: int, pp: int, dtype: str) -> None:
    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint.loader import load_megatron_model
    from mindspeed_rl.training.actor import MegatronActor, Samples
    from mindspeed_rl.training.optimizer import MegatronAdamW
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel

    initialize_model_parallel(tp, pp)
    params_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model, meta, _ = load_megatron_model(ckpt, params_dtype=params_dtype)
    opt = MegatronAdamW(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    actor = MegatronActor(model, meta, opt, GRPOLossConfig(kl_coef=0.0), 1.0, micro_batch_size=2)
    samples = Samples(
        prompt_ids=[s[:4] for s in SEQ], response_ids=[s[4:] for s in SEQ], advantages=[1.0, -0.5]
    )
    metrics = actor.update(samples, [[0, 1]], [12.0], lr=1e-3, clip_grad=0.0)
    report = {"metrics": metrics}
    if dtype == "bf16":
        report["params_bf16"] = all(p.dtype == torch.bfloat16 for p in opt.params)
        report["master_fp32"] = all(m.dtype == torch.float32 for m in opt.master)
        report["params_match_master"] = all(
            torch.equal(p, m.to(torch.bfloat16)) for p, m in zip(opt.params, opt.master)
        )
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


def _grad_norm(tmp_path: Path, tiny_dir: Path, tp: int, pp: int, dtype: str = "fp32") -> dict:
    ckpt = tmp_path / f"mcore-{tp}-{pp}"
    hf_to_mcore(tiny_dir, ckpt, tp=tp, pp=pp)
    out = tmp_path / f"out-{tp}-{pp}-{dtype}"
    out.mkdir()
    run_ranks(_worker, tp * pp, str(ckpt), str(out), tp, pp, dtype)
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return next(r for r in reports if r["metrics"])


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_grad_norm_is_layout_independent(tmp_path, tiny_qwen2_dir, tiny_llama_dir, family):
    # llama ties its embeddings: with PP=2 the last stage's output-layer copy must not count.
    tiny = tiny_qwen2_dir if family == "qwen2" else tiny_llama_dir
    base = _grad_norm(tmp_path, tiny, 1, 1)["metrics"]["actor/grad_norm"]
    for tp, pp in ((2, 1), (1, 2)):
        norm = _grad_norm(tmp_path, tiny, tp, pp)["metrics"]["actor/grad_norm"]
        assert norm == pytest.approx(base, rel=1e-4), (tp, pp)
    assert base > 0


def test_bf16_keeps_fp32_master_weights(tmp_path, tiny_llama_dir):
    report = _grad_norm(tmp_path, tiny_llama_dir, 1, 1, "bf16")
    assert report["params_bf16"] and report["master_fp32"] and report["params_match_master"]
