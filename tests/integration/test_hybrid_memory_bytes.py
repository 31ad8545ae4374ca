"""The rollout hand-over frees what megatron-core holds for training: the DDP gradient
buffers (really freed, on CPU too) and the optimizer's state, which on accelerators moves to
host; the bytes are counted against the model's size, and training goes on after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks


class _Asleep:
    def release_memory(self) -> None:
        pass


def _worker(rank: int, world: int, ckpt: str, out: str) -> None:
    from mindspeed_rl.accelerator import get_accelerator
    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks
    from mindspeed_rl.workers.hybrid_memory import HybridMemory, grad_buffer_bytes

    initialize_model_parallel(1, 1)
    chunks, meta, _ = build_chunks(
        ckpt, torch.bfloat16, ddp=DDPSettings(use_distributed_optimizer=True)
    )
    configure_chunks(chunks, overlap_grad_reduce=False)
    adam = opt.AdamSettings(1e-3, 0.0, (0.9, 0.999), 1e-8, 1.0, use_distributed_optimizer=True)
    optimizer = opt.build_optimizer(chunks, adam, torch.bfloat16)
    actor = MegatronActor(chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, 2)
    samples = Batch.from_columns([[5, 6, 7]] * 4, [[8, 9], [10, 11, 12], [13], [14, 15]],
                      advantages=[1.0, -1.0, 0.5, -0.5])  # fmt: skip
    actor.update(samples, [[0, 1, 2, 3]], lr=1e-3)
    memory = HybridMemory(get_accelerator(), None, chunks, optimizer)
    report = {
        "numel": sum(p.numel() for p in chunks[0].parameters()),
        "grad_bytes_before": grad_buffer_bytes(chunks),
        "optimizer_bytes": memory.optimizer_bytes(),
    }

    # The engine is built while the gradient buffers are freed, then the hand-over goes on.
    def build():
        report["grad_bytes_engine_build"] = grad_buffer_bytes(chunks)
        return _Asleep()

    memory.build_engine(build)
    report["grad_bytes_after_build"] = grad_buffer_bytes(chunks)
    memory.engine = None
    memory.to_rollout(lambda: None)
    report["grad_bytes_rollout"] = grad_buffer_bytes(chunks)
    report["moved"] = memory.moved
    memory.to_train()
    report["grad_bytes_after"] = grad_buffer_bytes(chunks)
    before = [p.detach().clone() for p in chunks[0].parameters()]
    metrics = actor.update(samples, [[0, 1, 2, 3]], lr=1e-3)
    report["grad_norm_after"] = metrics["actor/grad_norm"]
    report["moved_after"] = any(
        not torch.equal(a, b) for a, b in zip(before, chunks[0].parameters())
    )
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


def test_rollout_frees_grad_buffers_and_counts_sharded_optimizer(tmp_path, tiny_qwen2_dir):
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    run_ranks(_worker, 2, str(ckpt), str(tmp_path))
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    numel = reports[0]["numel"]
    # bf16 params, fp32 main params + Adam moments (12 B per parameter) sharded over DP=2.
    assert sum(r["optimizer_bytes"] for r in reports) == 12 * numel
    for r in reports:
        assert r["optimizer_bytes"] <= 0.51 * 12 * numel
        # fp32 gradient buffer: every parameter of the replica (padded for the reduce-scatter).
        assert 4 * numel <= r["grad_bytes_before"] <= 4 * numel * 1.01
        assert r["grad_bytes_rollout"] == 0
        assert r["grad_bytes_engine_build"] == 0
        assert r["grad_bytes_after_build"] == r["grad_bytes_before"]
        assert r["moved"]["grads"] == r["grad_bytes_before"]
        assert r["moved"]["optimizer"] == 0  # on CPU the optimizer state is host memory already
        assert r["grad_bytes_after"] == r["grad_bytes_before"]
        assert r["grad_norm_after"] > 0 and r["moved_after"]


def _mirror_worker(rank: int, world: int, ckpt: str, out: str, dtype_name: str) -> None:
    # rollout.pin_host_memory's bookkeeping, run on CPU without pinning (page-locking needs an
    # accelerator): every tensor megatron-core's offload would move lands in a host buffer of
    # the mirror, the same buffers take the next iteration's copies, and training with the
    # round trips equals training without them, bit for bit.
    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks

    dtype = mf.DTYPES[dtype_name]
    distributed = dtype == torch.bfloat16
    initialize_model_parallel(1, 1)
    samples = Batch.from_columns([[5, 6, 7]] * 4, [[8, 9], [10, 11, 12], [13], [14, 15]],
                      advantages=[1.0, -1.0, 0.5, -0.5])  # fmt: skip
    report: dict = {}
    weights = {}
    for mode in ("mirror", "plain"):
        chunks, meta, _ = build_chunks(
            ckpt, dtype, ddp=DDPSettings(use_distributed_optimizer=distributed)
        )
        configure_chunks(chunks, overlap_grad_reduce=False)
        adam = opt.AdamSettings(1e-3, 0.0, (0.9, 0.999), 1e-8, 1.0, distributed)
        optimizer = opt.build_optimizer(chunks, adam, dtype)
        actor = MegatronActor(chunks, meta, optimizer, GRPOLossConfig(kl_coef=0.0), 1.0, 2)
        mirror = opt.HostMirror(optimizer, pin=False)
        pointers = []
        for _ in range(3):
            actor.update(samples, [[0, 1, 2, 3]], lr=1e-3)
            if mode == "plain":
                continue
            moved = mirror.offload(lambda: None)
            held = {t.data_ptr() for t in opt.state_tensors(optimizer)}
            buffers = {b.data_ptr() for b in mirror.buffers.values()}
            report.setdefault("all_in_buffers", []).append(held == buffers)
            report.setdefault("moved", []).append(moved == opt.state_bytes(optimizer))
            pointers.append(sorted(buffers))
            mirror.restore()
            back = {t.data_ptr() for t in opt.state_tensors(optimizer)}
            report.setdefault("restored_apart", []).append(not back & buffers)
        if mode == "mirror":
            report["reused"] = all(p == pointers[0] for p in pointers)
            report["steps_model_params"] = opt.steps_model_params(optimizer)
        weights[mode] = [p.detach().clone() for p in chunks[0].parameters()]
    report["equal"] = all(torch.equal(a, b) for a, b in zip(weights["mirror"], weights["plain"]))
    (Path(out) / f"mirror{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


@pytest.mark.parametrize("dtype_name", ["bf16", "fp32"], ids=["bf16_distopt", "fp32_replicated"])
def test_pinned_host_mirror_moves_everything_reuses_its_buffers_and_changes_nothing(
    tmp_path, tiny_qwen2_dir, dtype_name
):
    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    run_ranks(_mirror_worker, 2, str(ckpt), str(tmp_path), dtype_name)
    for r in range(2):
        rep = json.loads((tmp_path / f"mirror{r}.json").read_text())
        assert rep["all_in_buffers"] == [True] * 3 and rep["moved"] == [True] * 3
        assert rep["restored_apart"] == [True] * 3 and rep["reused"]
        # fp32 replicated: the optimizer steps the model's own params, which move too.
        assert rep["steps_model_params"] == (dtype_name == "fp32")
        assert rep["equal"]
