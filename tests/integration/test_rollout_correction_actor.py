"""Rollout correction through the real actor (megatron-core schedule, DP2 over gloo): an engine
whose log-probs sit ln 3 below the policy's gives every token w = 3, truncated by TIS to the
cap 2, so the policy-gradient loss and the gradient are exactly twice the uncorrected ones,
and the metrics reduced over micro-batches and ranks say so."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks

PROMPTS = [[5, 17, 33, 99], [9, 8, 7], [5, 17, 33, 99], [40, 41, 42, 43, 44]]
RESPONSES = [[120, 7, 8, 200, 3, 41], [6, 5, 4], [64, 65, 66, 67, 2], [1, 2]]
ADVANTAGES = [1.0, -0.5, 0.8, -1.2]


def _worker(rank: int, world: int, ckpt: str, out: str) -> None:
    import torch.distributed as dist

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(1, 1)
    chunks, meta, _ = build_chunks(ckpt, torch.float32, ddp=DDPSettings())
    configure_chunks(chunks, overlap_grad_reduce=False)
    optimizer = opt.build_optimizer(
        chunks, opt.AdamSettings(1e-3, 0.0, (0.9, 0.999), 1e-8, 0.0, False), torch.float32
    )
    loss = GRPOLossConfig(kl_coef=0.0, rollout_correction="tis", rollout_correction_cap=2.0)
    actor = MegatronActor(chunks, meta, optimizer, replace(loss, rollout_correction="none"), 1.0, 2)
    batch = Batch.from_columns(PROMPTS, RESPONSES, advantages=ADVANTAGES)
    shares = [None] * world
    dist.all_gather_object(shares, actor.logprobs(batch))
    logprobs = {i: lp for share in shares for i, lp in share.items()}
    # The engine's log-probs: ln 3 below the policy's on every token.
    rollout = [[x - math.log(3.0) for x in logprobs[i]] for i in range(len(PROMPTS))]
    batch = batch.with_column("rollout_logprobs", rollout)
    everything = [list(range(len(PROMPTS)))]
    figures = {"none": actor.update(batch, everything, lr=0.0)}
    actor.loss_config = loss
    figures["tis"] = actor.update(batch, everything, lr=0.0)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(figures))
    destroy_model_parallel()


def test_tis_weights_reach_the_loss_and_the_metrics(tmp_path, tiny_qwen2_dir):
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    run_ranks(_worker, 2, str(ckpt), str(tmp_path))
    figures = json.loads((tmp_path / "rank0.json").read_text())
    none, tis = figures["none"], figures["tis"]
    assert tis["actor/pg_loss"] == pytest.approx(2 * none["actor/pg_loss"], rel=1e-5)
    assert tis["actor/grad_norm"] == pytest.approx(2 * none["actor/grad_norm"], rel=1e-4)
    assert tis["rollout_correction/weight_mean"] == pytest.approx(2.0)
    assert tis["rollout_correction/weight_max"] == pytest.approx(2.0)
    assert tis["rollout_correction/corrected_frac"] == pytest.approx(1.0)
    # k3 of KL(rollout || old) with r = 3 on every token: 3 - ln 3 - 1.
    assert none["rollout/mismatch_kl"] == pytest.approx(2 - math.log(3.0), rel=1e-5)
    assert "rollout_correction/weight_mean" not in none
