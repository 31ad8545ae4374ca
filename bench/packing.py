"""Padded rows against sequences packed by a token budget (THD), on the actor's update step.

SmolLM2-135M at DP2 (TP1, 2 ranks on the 2 cores), one optimizer step over a batch, in one
run: padded micro-batches of ``--rows`` samples (every micro-batch as long as the rank's
longest sample), sequences packed back to back into micro-batches of ``--budget`` tokens
(``trainer.max_tokens_per_micro_batch``), and for the short-answer case also the shared-prompt
packing (``trainer.pack_prompts``). Each variant runs in fresh processes: one warm-up update,
then ``--steps`` timed ones while every rank samples its RSS.

Cases (response lengths; prompts are 8 distinct random prompts, 8 responses each):
- ``long_tail``: lognormal lengths clipped to [16, --max-len], like R1-Zero responses.
- ``long_tail_one_max``: the same batch with one response grown to --max-len: the padded
  path's memory follows its longest response, the packed path's follows the budget (and,
  with logits computed --logits-chunk positions at a time, not the share of response tokens
  in a pass: the ``packed_whole_logits`` variant shows the peak without chunks).
- ``uniform``: every response --max-len / 2 long: nothing to save by packing; shows its
  overhead (the per-sequence attention loop on CPU, the logits index).
- ``tiny``: 1-4 token responses after short prompts: many sequences per micro-batch.
- ``quickstart``: the CPU quick-start's shape (prompts 110 tokens, responses 20-64), where
  shared-prompt packing was chosen; decides which packing the CPU preset uses.

    python bench/packing.py [--max-len 1024] [--budget 0] [--steps 2] [--logits-chunk 1024]
                            [--cases C1,C2] [--variants padded,packed,...] [--out F]

What it cannot see: accelerator kernels (flash varlen, npu_fusion_attention), where padding
costs FLOPs the same way but the attention share and launch overheads differ; batches whose
samples' lengths correlate with the data-parallel split; and the rollout, which packing does
not touch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from common import PeakRSS, emit  # noqa: E402

MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
PROMPTS, PER_PROMPT = 8, 8
MAX_RESPONSE = {
    "long_tail": lambda max_len: max_len,
    "long_tail_one_max": lambda max_len: max_len,
    "uniform": lambda max_len: max_len // 2,
    "tiny": lambda max_len: 4,
    "quickstart": lambda max_len: 64,
}
"""The longest response a case allows: the default budget holds --rows of those (with their
prompt), what one padded pass of the longest possible samples holds, and it is the same for
``long_tail`` and ``long_tail_one_max``."""


def make_batch(case: str, max_len: int, seed: int = 0) -> dict:
    """Prompts, responses and advantages of one case (token ids are random: the update's cost
    does not depend on them)."""
    rng = random.Random(seed)
    # R1-style prompts are about a tenth of the longest response.
    prompt_len = {"quickstart": 110, "tiny": 24}.get(case, max(16, max_len // 10))
    prompts, responses, advantages = [], [], []
    for _ in range(PROMPTS):
        prompt = [rng.randrange(100, 49000) for _ in range(prompt_len)]
        for _ in range(PER_PROMPT):
            if case.startswith("long_tail"):
                # median max_len / 8; the longest of 64 about half of max_len
                n = int(min(max_len, max(16, rng.lognormvariate(math.log(max_len / 8), 0.6))))
            elif case == "uniform":
                n = max_len // 2
            elif case == "tiny":
                n = rng.randint(1, 4)
            else:  # quickstart
                n = rng.randint(20, 64)
            prompts.append(prompt)
            responses.append([rng.randrange(100, 49000) for _ in range(n)])
            advantages.append(rng.gauss(0, 1))
    if case == "long_tail_one_max":
        responses[0] = [rng.randrange(100, 49000) for _ in range(max_len)]
    return {"prompts": prompts, "responses": responses, "advantages": advantages}


def _worker(rank: int, world: int, ckpt: str, out: str, batch: dict, variant: dict, steps: int):
    import psutil
    import torch
    import torch.distributed as dist

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(1, 1)
    dtype = torch.float32
    chunks, meta, _ = build_chunks(ckpt, dtype, ddp=DDPSettings())
    configure_chunks(chunks, overlap_grad_reduce=False)
    optimizer = opt.build_optimizer(
        chunks, opt.AdamSettings(1e-6, 0.0, (0.9, 0.999), 1e-8, 1.0), dtype
    )
    actor = MegatronActor(
        chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, variant.get("rows", 4),
        pack_prompts=variant.get("pack_prompts", False),
        max_tokens_per_micro_batch=variant.get("budget", 0),
        logits_chunk_tokens=variant.get("chunk", 0),
    )  # fmt: skip
    samples = Batch.from_columns(
        batch["prompts"], batch["responses"], advantages=batch["advantages"]
    )
    everything = [list(range(len(samples)))]
    warm = Batch.from_columns(samples.prompt_ids[:4], [r[:8] for r in samples.response_ids[:4]],
                   advantages=samples.advantages[:4])  # fmt: skip
    actor.update(warm, [[0, 1, 2, 3]], lr=1e-6)  # allocator, optimizer state, hooks
    dist.barrier()
    before = psutil.Process().memory_info().rss
    times, figures = [], {}
    with PeakRSS(interval=0.005) as peak:
        for _ in range(steps):
            dist.barrier()
            start = time.perf_counter()
            figures = actor.update(samples, everything, lr=1e-6)
            times.append(time.perf_counter() - start)
    result = {
        "seconds_per_update": sorted(times)[len(times) // 2],
        "peak_rss_bytes": peak.peak,
        "peak_rss_above_start_bytes": peak.peak - before,
        "loss": figures.get("actor/loss"),
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def run_variant(ckpt: Path, batch: dict, variant: dict, steps: int) -> dict:
    from mindspeed_rl.utils.spawn import run_ranks

    with tempfile.TemporaryDirectory() as out:
        run_ranks(_worker, 2, str(ckpt), out, batch, variant, steps)
        ranks = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return {
        "seconds_per_update": max(r["seconds_per_update"] for r in ranks),
        "peak_rss_gb_max_rank": max(r["peak_rss_bytes"] for r in ranks) / 2**30,
        "peak_rss_above_start_gb_max_rank": max(r["peak_rss_above_start_bytes"] for r in ranks)
        / 2**30,
        "loss": next(r["loss"] for r in ranks if r["loss"] is not None),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-len", type=int, default=1024, help="longest response")
    parser.add_argument(
        "--budget", type=int, default=0,
        help="tokens per packed pass; 0: what one padded pass of the case's longest possible "
        "samples holds (--rows x (prompt + longest response allowed))",
    )  # fmt: skip
    parser.add_argument("--rows", type=int, default=4, help="samples per padded micro-batch")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cases", default="long_tail,long_tail_one_max,uniform,tiny,quickstart")
    parser.add_argument(
        "--logits-chunk", type=int, default=1024,
        help="trainer.logits_chunk_tokens of every variant (0: whole windows)",
    )  # fmt: skip
    parser.add_argument(
        "--variants", default="padded,packed,packed_whole_logits,shared_prompt",
        help="which to run (padded always runs: the ratios are against it); "
        "packed_whole_logits only in the long-tail cases, shared_prompt only in quickstart/tiny",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    os.environ.setdefault("MINDSPEED_RL_DEVICE", "cpu")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "mcore"
        hf_to_mcore(MODEL, ckpt, tp=1, pp=1)
        for case in args.cases.split(","):
            batch = make_batch(case, args.max_len)
            lengths = sorted(len(r) for r in batch["responses"])
            longest = len(batch["prompts"][0]) + MAX_RESPONSE[case](args.max_len)
            budget = args.budget or args.rows * longest
            chunk = args.logits_chunk
            variants = {
                "padded": {"rows": args.rows, "chunk": chunk},
                "packed": {"budget": budget, "chunk": chunk},
            }
            if case.startswith("long_tail") and chunk:
                variants["packed_whole_logits"] = {"budget": budget, "chunk": 0}
            if case in ("quickstart", "tiny"):
                variants["shared_prompt"] = {"rows": PER_PROMPT, "pack_prompts": True,
                                             "chunk": chunk}  # fmt: skip
            wanted = {"padded", *args.variants.split(",")}
            variants = {k: v for k, v in variants.items() if k in wanted}
            results = {name: run_variant(ckpt, batch, v, args.steps)
                       for name, v in variants.items()}  # fmt: skip
            padded = results["padded"]
            for r in results.values():
                r["speed_vs_padded"] = padded["seconds_per_update"] / r["seconds_per_update"]
                r["peak_rss_vs_padded"] = r["peak_rss_gb_max_rank"] / padded["peak_rss_gb_max_rank"]
                r["loss_rel_diff_vs_padded"] = abs(r["loss"] - padded["loss"]) / abs(padded["loss"])
            cases[case] = {
                "response_tokens": {
                    "min": lengths[0],
                    "median": lengths[len(lengths) // 2],
                    "max": lengths[-1],
                    "total": sum(lengths),
                },
                "prompt_tokens": len(batch["prompts"][0]),
                "budget_tokens": budget,
                **results,
            }
            print(json.dumps({case: cases[case]}), file=sys.stderr)
    emit(
        {
            "bench": "packing",
            "model": MODEL.name,
            "layout": "TP1 PP1 DP2, fp32 params, 2 ranks (one core each)",
            "batch": f"{PROMPTS} prompts x {PER_PROMPT} responses, one optimizer step",
            "padded_rows": args.rows,
            "max_len": args.max_len,
            "logits_chunk_tokens": args.logits_chunk,
            "steps": args.steps,
            "cases": cases,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
