"""The actor's update step: megatron-core's DDP / optimizer / schedule against the code before
it (a git ref, run from a temporary worktree), on the same batch in the same run.

SmolLM2-135M in bf16 at DP2 (TP1, 2 ranks on the 2 cores), the quick-start's update: 8
prompts x 8 responses, shared-prompt packing, micro-batches of 8 responses, one optimizer
step. Each variant runs one warm-up update, then ``--steps`` timed ones; every rank samples
its RSS during them. Prints JSON: seconds per update (median over steps, slowest rank), peak
RSS per rank (absolute, and above the RSS before the first update), optimizer state bytes.

    python bench/update.py [--steps 3] [--before 9e33553] [--out bench/results/update.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import PeakRSS, emit  # noqa: E402

# The code under test: this checkout, or the "before" worktree when the driver runs a variant
# there (child processes inherit the environment, so every rank imports the same code).
CODE_ROOT = Path(os.environ.get("MINDSPEED_BENCH_CODE_ROOT", str(REPO)))
sys.path.insert(0, str(CODE_ROOT))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
PROMPTS, SAMPLES_PER_PROMPT, PROMPT_LEN, MAX_RESPONSE = 8, 8, 110, 64
VARIANTS = {
    "current": {},
    "current+distopt": {"distributed": True},
    "current+recompute": {"recompute": "full"},
    "current+distopt+recompute": {"distributed": True, "recompute": "full"},
}


def _batch():
    """The same 64 (prompt, response, advantage) triples for every variant."""
    rng = random.Random(0)
    prompts, responses, advantages = [], [], []
    for _ in range(PROMPTS):
        prompt = [rng.randrange(100, 49000) for _ in range(PROMPT_LEN)]
        for _ in range(SAMPLES_PER_PROMPT):
            prompts.append(prompt)
            responses.append(
                [rng.randrange(100, 49000) for _ in range(rng.randint(20, MAX_RESPONSE))]
            )
            advantages.append(rng.gauss(0, 1))
    return prompts, responses, advantages


def _timed(update, steps: int) -> dict:
    import psutil
    import torch.distributed as dist

    update()  # warm-up: allocator, optimizer state, hooks
    dist.barrier()
    before = psutil.Process().memory_info().rss
    times = []
    with PeakRSS(interval=0.005) as peak:
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            update()
            times.append(time.perf_counter() - start)
    return {
        "seconds_per_update": sorted(times)[len(times) // 2],
        "peak_rss_bytes": peak.peak,
        "peak_rss_above_start_bytes": peak.peak - before,
    }


def _worker_current(rank: int, world: int, ckpt: str, out: str, variant: dict, steps: int):
    import torch

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.models.builder import Recompute
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(1, 1)
    distributed = variant.get("distributed", False)
    recompute = Recompute(variant.get("recompute", ""))
    chunks, meta, _ = build_chunks(
        ckpt, torch.bfloat16, recompute, DDPSettings(use_distributed_optimizer=distributed)
    )
    configure_chunks(chunks, overlap_grad_reduce=False)
    adam = opt.AdamSettings(1e-6, 0.0, (0.9, 0.999), 1e-8, 1.0, distributed)
    optimizer = opt.build_optimizer(chunks, adam, torch.bfloat16)
    actor = MegatronActor(chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, 8,
                          pack_prompts=True)  # fmt: skip
    prompts, responses, advantages = _batch()
    samples = Batch.from_columns(prompts, responses, advantages=advantages)
    result = _timed(lambda: actor.update(samples, [list(range(len(prompts)))], lr=1e-6), steps)
    result["optimizer_state_bytes"] = opt.state_bytes(optimizer)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def _worker_before(rank: int, world: int, ckpt: str, out: str, variant: dict, steps: int):
    """The same update with the code at the ``--before`` ref (hand-written AdamW with fp32
    master weights on every rank, per-tensor DP all-reduce, its own schedule)."""
    import torch

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint.loader import load_megatron_model
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.optimizer import MegatronAdamW
    from mindspeed_rl.training.parallel import initialize_model_parallel

    initialize_model_parallel(1, 1)
    model, meta, _ = load_megatron_model(ckpt, params_dtype=torch.bfloat16)
    optimizer = MegatronAdamW(model, 1e-6, (0.9, 0.999), 1e-8, 0.0)
    actor = MegatronActor(model, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, 8,
                          pack_prompts=True)  # fmt: skip
    prompts, responses, advantages = _batch()
    samples = Batch.from_columns(prompts, responses, advantages=advantages)
    norm = float(sum(len(r) for r in responses))
    everything = [list(range(len(prompts)))]
    result = _timed(lambda: actor.update(samples, everything, [norm], 1e-6, 1.0), steps)
    state = [t for s in optimizer.optimizer.state.values() for t in s.values()
             if isinstance(t, torch.Tensor) and t.dim() > 0] + list(optimizer.master)  # fmt: skip
    result["optimizer_state_bytes"] = sum(t.numel() * t.element_size() for t in state)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def _run_variant(name: str, ckpt: Path, steps: int) -> list[dict]:
    from mindspeed_rl.utils.spawn import run_ranks

    with tempfile.TemporaryDirectory() as out:
        worker = _worker_before if name == "before" else _worker_current
        run_ranks(worker, 2, str(ckpt), out, VARIANTS.get(name, {}), steps)
        return [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--before", default="9e33553", help="git ref of the baseline code")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in this process
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    os.environ.setdefault("MINDSPEED_RL_DEVICE", "cpu")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.variant:  # child mode: print one variant's per-rank results
        print(json.dumps(_run_variant(args.variant, args.ckpt, args.steps)))
        return 0
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "mcore"
        hf_to_mcore(MODEL, ckpt, tp=1, pp=1)
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree),
                        args.before], check=True, capture_output=True)  # fmt: skip
        try:
            for name in ["before", *VARIANTS]:
                root = worktree if name == "before" else REPO
                env = {**os.environ, "MINDSPEED_BENCH_CODE_ROOT": str(root)}
                proc = subprocess.run(
                    [sys.executable, __file__, "--variant", name, "--ckpt", str(ckpt),
                     "--steps", str(args.steps)],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode:
                    raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
                results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(worktree)], check=False, capture_output=True)  # fmt: skip
    base = results["before"]
    summary = {}
    for name, ranks in results.items():
        seconds = max(r["seconds_per_update"] for r in ranks)
        summary[name] = {
            "seconds_per_update": seconds,
            "speed_vs_before": max(r["seconds_per_update"] for r in base) / seconds,
            "peak_rss_gb_max_rank": max(r["peak_rss_bytes"] for r in ranks) / 2**30,
            "peak_rss_above_start_gb_max_rank": max(r["peak_rss_above_start_bytes"] for r in ranks)
            / 2**30,
            "optimizer_state_gb_per_rank": max(r["optimizer_state_bytes"] for r in ranks) / 2**30,
            "optimizer_state_vs_before": max(r["optimizer_state_bytes"] for r in ranks)
            / max(r["optimizer_state_bytes"] for r in base),
        }
    report = {
        "bench": "update",
        "model": MODEL.name,
        "layout": "TP1 PP1 DP2, bf16 params, 2 ranks",
        "batch": f"{PROMPTS} prompts x {SAMPLES_PER_PROMPT} responses, prompt {PROMPT_LEN} "
        f"tokens, responses 20-{MAX_RESPONSE}, packed, micro-batch 8",
        "before": args.before,
        "steps": args.steps,
        "summary": summary,
        "per_rank": results,
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
