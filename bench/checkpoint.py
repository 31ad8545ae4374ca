"""Checkpoint cost: seconds and bytes to save and load the training state of SmolLM2-135M at
DP2 (two processes over gloo), megatron-core's dist_checkpointing (what the trainer writes
now) against the per-rank ``torch.save`` files it wrote before, in one run.

Each rank builds the model (bf16 params, fp32 main params in the optimizer, the distributed
or replicated optimizer), takes one optimizer step so that Adam's moments exist, then per
repeat: saves both formats into fresh folders and loads them back. "old" is the former
format, re-created here: DP rank 0 writes the model's state dict, every rank (distributed
optimizer) or DP rank 0 (replicated) its optimizer tensors, each with ``torch.save``; its load
is ``torch.load`` of those files (the tensors are read, not copied into the optimizer), so it
is a lower bound of the old resume. "dist" is :mod:`mindspeed_rl.training.checkpoint`'s save
and load (into the live model and optimizer, layout checks included). Bytes are the files on
disk. Prints JSON.

    python bench/checkpoint.py [--distributed-optimizer] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import emit  # noqa: E402

sys.path.insert(0, str(REPO))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct"


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _worker(rank: int, world: int, ckpt: str, work: str, distributed: bool, repeats: int):
    import torch
    import torch.distributed as dist

    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import checkpoint
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks, unwrap
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    initialize_model_parallel(1, 1)
    chunks, meta, _ = build_chunks(
        ckpt, torch.bfloat16, ddp=DDPSettings(use_distributed_optimizer=distributed)
    )
    configure_chunks(chunks, overlap_grad_reduce=False)
    adam = opt.AdamSettings(1e-6, 0.0, (0.9, 0.999), 1e-8, 1.0, distributed)
    optimizer = opt.build_optimizer(chunks, adam, torch.bfloat16)
    actor = MegatronActor(chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, 2)
    prompts = [[1, 2, 3, 4]] * 4
    responses = [[5, 6, 7, 8, 9, 10]] * 4
    old = [[-1.0] * 6] * 4
    batch = Batch.from_columns(prompts, responses, advantages=[1.0, -1.0, 0.5, -0.5],
                               old_logprobs=old)  # fmt: skip
    actor.update(batch, [[0, 1, 2, 3]], lr=1e-6)
    dp_rank = dist.get_rank()
    timings: dict[str, list[float]] = {"old_save": [], "old_load": [], "dist_save": [],
                                       "dist_load": []}  # fmt: skip
    sizes = {}
    for r in range(repeats):
        old_dir = Path(work) / f"old{r}"
        new_dir = Path(work) / f"dist{r}"
        old_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        t = time.perf_counter()
        files = []
        if dp_rank == 0:
            model = {k: v for k, v in unwrap(chunks[0]).state_dict().items() if v is not None}
            files.append(old_dir / "model.pt")
            torch.save(model, files[-1])
        if distributed or dp_rank == 0:
            files.append(old_dir / f"optim_dp{dp_rank}.pt")
            torch.save([t.detach().cpu() for t in opt.state_tensors(optimizer)], files[-1])
        dist.barrier()
        timings["old_save"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for f in files:
            torch.load(f, weights_only=True)
        dist.barrier()
        timings["old_load"].append(time.perf_counter() - t)
        t = time.perf_counter()
        checkpoint.save(new_dir, chunks, optimizer, meta)
        dist.barrier()
        timings["dist_save"].append(time.perf_counter() - t)
        t = time.perf_counter()
        checkpoint.load(new_dir, chunks, optimizer, meta)
        dist.barrier()
        timings["dist_load"].append(time.perf_counter() - t)
        if rank == 0:
            sizes = {"old_bytes": _bytes(old_dir), "dist_bytes": _bytes(new_dir)}
            shutil.rmtree(old_dir)
            shutil.rmtree(new_dir)
        dist.barrier()
    if rank == 0:
        report = {"timings": timings, **sizes, "optimizer_state_bytes": opt.state_bytes(optimizer)}
        (Path(work) / "rank0.json").write_text(json.dumps(report))
    destroy_model_parallel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--distributed-optimizer", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    from mindspeed_rl.checkpoint.convert import hf_to_mcore
    from mindspeed_rl.utils.spawn import run_ranks

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "mcore"
        hf_to_mcore(MODEL, ckpt)
        work = Path(tmp) / "work"
        run_ranks(_worker, 2, str(ckpt), str(work), args.distributed_optimizer, args.repeats)
        measured = json.loads((work / "rank0.json").read_text())
    best = {k: min(v) for k, v in measured["timings"].items()}
    report = {
        "benchmark": "checkpoint",
        "model": MODEL.name,
        "layout": "TP1 PP1 DP2, bf16 params, fp32 main params",
        "optimizer": "distributed" if args.distributed_optimizer else "replicated",
        "seconds_best_of_repeats": {k: round(v, 3) for k, v in best.items()},
        "seconds_all": measured["timings"],
        "bytes": {"old": measured["old_bytes"], "dist": measured["dist_bytes"]},
        "ratio_dist_over_old": {
            "save_s": round(best["dist_save"] / best["old_save"], 2),
            "load_s": round(best["dist_load"] / best["old_load"], 2),
            "bytes": round(measured["dist_bytes"] / measured["old_bytes"], 3),
        },
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
