"""Seconds per iteration and held-out accuracy: the hybrid engine against generation on ranks
of its own, on-policy and one step off policy, in one run on the same machine.

Each variant runs ``cli/train_grpo.py`` with the same preset, seed and data, for the same
number of iterations, and differs only in where generation runs and when:

- ``colocated``: every rank trains and generates in turn (the hybrid engine, the preset's
  own layout);
- ``split_on_policy``: ``resources.rollout_workers`` ranks only generate, the others only
  train; each batch is generated after the previous update (no overlap) — what the split
  costs by itself;
- ``one_step_off``: the same split with ``algorithm.max_staleness=1``: the next batch is
  generated while this one trains (token TIS corrects the one-version lag).

The ranks are the same in number (the preset's, split for the last two). Reported per
variant: median seconds per iteration (iterations 2.. ; the first includes the engines'
warm-up), the share of the step spent waiting for a rollout, held-out
accuracy before and after, and the reward curve. Partial rollouts are not built, so there
is no variant for them.

    .venv/bin/python bench/async.py [--config-name grpo_smollm2_cpu] [--iterations 10]
        [--rollout-workers 1] [--out bench/results/async.json] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import emit  # noqa: E402


def variants(world: int, generators: int) -> dict[str, list[str]]:
    split = [f"resources.devices_per_node={world - generators}",
             f"resources.rollout_workers={generators}"]  # fmt: skip
    return {
        "colocated": [],
        "split_on_policy": split,
        "one_step_off": [*split, "algorithm.max_staleness=1", "loss.rollout_correction=tis"],
    }


def run(config: str, out: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, str(REPO / "cli" / "train_grpo.py"), "--config-name", config,
           f"trainer.output_dir={out}", "trainer.export_hf=false", *overrides]  # fmt: skip
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"async bench: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward/mean" in r]
    val = [r for r in rows if "val/accuracy" in r]
    steps = [r["timing/step"] for r in train[1:]]
    waits = [r.get("timing/rollout_wait", 0.0) for r in train[1:]]
    return {
        "overrides": overrides,
        "wall_s": round(seconds, 1),
        "median_step_s": round(statistics.median(steps), 3),
        "rollout_wait_share": round(sum(waits) / sum(steps), 3),
        "median_rollout_s": round(statistics.median(r["timing/rollout"] for r in train[1:]), 3),
        "median_update_s": round(statistics.median(r["timing/update"] for r in train[1:]), 3),
        "val_accuracy": {str(r["iteration"]): r["val/accuracy"] for r in val},
        "reward": [round(r["reward/mean"], 4) for r in train],
        "response_length_max": [r["response_length/max"] for r in train],
        "staleness_max": [r.get("async/staleness_max", 0.0) for r in train],
        "mismatch_kl": [r.get("rollout/mismatch_kl") for r in train],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-name", default="grpo_smollm2_cpu")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rollout-workers", type=int, default=1)
    parser.add_argument("--world", type=int, default=2, help="ranks in all (the preset's)")
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--out", type=Path)
    args, overrides = parser.parse_known_args()
    common = [f"trainer.iterations={args.iterations}", f"trainer.val_interval={args.iterations}",
              "trainer.save_interval=0", *overrides]  # fmt: skip
    report: dict = {"config": args.config_name, "iterations": args.iterations, "variants": {}}
    tmp = Path(tempfile.mkdtemp(prefix="async-bench-"))
    try:
        for name, extra in variants(args.world, args.rollout_workers).items():
            if args.only and name not in args.only:
                continue
            report["variants"][name] = run(args.config_name, tmp / name, [*common, *extra])
            print(f"async bench: {name} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    v = report["variants"]
    if "colocated" in v and "one_step_off" in v:
        report["one_step_off_speedup"] = round(
            v["colocated"]["median_step_s"] / v["one_step_off"]["median_step_s"], 3
        )
    if "split_on_policy" in v and "one_step_off" in v:
        report["overlap_speedup"] = round(
            v["split_on_policy"]["median_step_s"] / v["one_step_off"]["median_step_s"], 3
        )
    emit(report, args.out)


if __name__ == "__main__":
    main()
