"""The rollout hand-over frees what megatron-core holds for training: the DDP gradient
buffers (really freed, on CPU too) and the optimizer's state, which on accelerators moves to
host; the bytes are counted against the model's size, and training goes on after."""

from __future__ import annotations

import json
from pathlib import Path

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
