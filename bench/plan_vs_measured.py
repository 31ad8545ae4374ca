"""The memory plan against a measurement: SmolLM2-135M's update at DP2 on CPU.

Two ranks (gloo, one core each) build the CPU preset's actor (``grpo_smollm2_cpu``: bf16,
TP1, megatron-core DDP and optimizer, packed prompts) from a converted checkpoint and run
``--updates`` optimizer steps on micro-batches of the preset's shape: one prompt of
``--prompt-tokens`` then ``trainer.micro_batch_size`` responses of ``sampling.max_tokens``.
Each rank samples its RSS every 2 ms; the measured figure is its peak minus the RSS just
before the model was built (imports and process groups are the baseline), with glibc's
default allocator and with its mmap threshold pinned (see ``MALLOC``). The prediction is
``cli/plan.py``'s training phase for the same config without vLLM's terms (no engine is
built here). Prints JSON; ``within_20pct`` says whether they agree to +-20 % (pinned
threshold).

    python bench/plan_vs_measured.py [--updates 2] [--prompt-tokens 87] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import emit  # noqa: E402

sys.path.insert(0, str(REPO))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
PRESET = "grpo_smollm2_cpu"
NOT_BUILT = ("vLLM weights", "KV cache")
# glibc raises its mmap threshold each time a large block is freed, after which tensors come
# from the heap and freed ones stay in RSS: RSS then grows from one identical update to the
# next. Pinning the threshold keeps large tensors in their own mappings, returned on free, so
# RSS follows live memory; the default allocator's figure is reported beside it.
MALLOC = {
    "default_malloc": {},
    "pinned_mmap_threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"},
}


class _PeakRSS:
    """Samples this process's RSS in a thread until stopped."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._proc.memory_info().rss)


def _trim() -> None:
    """Hand freed heap back to the OS so RSS reflects what is live (glibc only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _worker(rank: int, world: int, ckpt: str, out: str, shape: dict) -> None:
    import psutil

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(1, 1)
    _trim()
    baseline = psutil.Process().memory_info().rss
    sampler = _PeakRSS()
    dtype = mf.DTYPES[shape["params_dtype"]]
    rss = psutil.Process().memory_info
    steps = {}
    chunks, meta, _ = build_chunks(ckpt, dtype, ddp=DDPSettings())
    configure_chunks(chunks, overlap_grad_reduce=False)
    steps["model_built"] = rss().rss - baseline
    adam = opt.AdamSettings(1e-5, 0.0, (0.9, 0.999), 1e-8, 1.0, False)
    optimizer = opt.build_optimizer(chunks, adam, dtype)
    steps["optimizer_built"] = rss().rss - baseline
    actor = MegatronActor(
        chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0,
        micro_batch_size=shape["micro_batch"], pack_prompts=True,
    )  # fmt: skip
    n, mb = shape["samples_per_rank"] * world, shape["micro_batch"]
    prompts, responses = [], []
    for i in range(n):
        group = i // mb  # micro_batch responses share each prompt, as the preset packs them
        prompts.append([(7 * group + j) % 40000 + 100 for j in range(shape["prompt_tokens"])])
        responses.append([(13 * i + j) % 40000 + 100 for j in range(shape["response_tokens"])])
    old = [[-5.0] * len(r) for r in responses]
    advantages = [(-1.0) ** i for i in range(n)]
    samples = Batch.from_columns(prompts, responses, advantages=advantages, old_logprobs=old)
    for i in range(shape["updates"]):
        actor.update(samples, [list(range(n))], lr=1e-5)
        steps[f"after_update_{i + 1}"] = rss().rss - baseline
        steps[f"peak_by_update_{i + 1}"] = sampler.peak - baseline
    peak = sampler.stop()
    report = {
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_above_baseline": peak - baseline,
        "rss_above_baseline_at": steps,
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


def predicted(prompt_tokens: int) -> dict:
    """The plan's training phase for the preset, by term, without the terms of vLLM."""
    from dataclasses import replace

    from mindspeed_rl.config.grpo import load_config
    from mindspeed_rl.plan.inputs import plan_input
    from mindspeed_rl.plan.memory import training_phase

    cfg = load_config(PRESET)
    x = replace(plan_input(cfg, 0, read_dataset=False), prompt_tokens=prompt_tokens)
    phase = training_phase(x, 0)
    terms = {t.name: int(t.bytes) for t in phase.terms if t.name not in NOT_BUILT}
    return {"terms": terms, "total": sum(terms.values()), "input": x}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=87, help="the arithmetic prompts'")
    parser.add_argument("--samples-per-rank", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from mindspeed_rl.checkpoint.convert import hf_to_mcore
    from mindspeed_rl.utils.spawn import run_ranks

    plan = predicted(args.prompt_tokens)
    x = plan.pop("input")
    shape = {
        "params_dtype": x.params_dtype,
        "micro_batch": x.micro_batch,
        "prompt_tokens": args.prompt_tokens,
        "response_tokens": x.response_tokens,
        "samples_per_rank": args.samples_per_rank,
        "updates": args.updates,
    }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "mcore"
        hf_to_mcore(MODEL, ckpt, tp=1, pp=1, params_dtype=x.params_dtype)
        for name, env in MALLOC.items():
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)  # the spawned ranks inherit it
            try:
                out = Path(tmp) / name
                out.mkdir()
                run_ranks(_worker, x.world, str(ckpt), str(out), shape)
            finally:
                for k, v in saved.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(x.world)]
            measured = max(r["peak_above_baseline"] for r in ranks)
            runs[name] = {
                "env": env,
                "measured_bytes": measured,
                "predicted_over_measured": round(plan["total"] / measured, 3),
                "ranks": ranks,
            }
    ratio = runs["pinned_mmap_threshold"]["predicted_over_measured"]
    report = {
        "what": "predicted vs measured peak RSS above baseline, SmolLM2-135M update, DP2, CPU",
        "preset": PRESET,
        "shape": shape,
        "predicted_bytes": plan["total"],
        "predicted_terms": plan["terms"],
        "runs": runs,
        "predicted_over_measured": ratio,
        "within_20pct": abs(ratio - 1) <= 0.2,
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
