"""The trainer -> generation ranks weight group (resharding/transfer.py) over real gloo
processes: what rank 0 sends, every other rank receives, bucket by bucket, named and shaped
by the manifest, outside the processes' default world."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from mindspeed_rl.resharding.transfer import WeightTransfer
from mindspeed_rl.utils.spawn import run_ranks

MANIFEST = [
    [("model.embed_tokens.weight", (7, 4))],
    [("model.layers.0.self_attn.q_proj.weight", (4, 4)), ("model.norm.weight", (4,))],
    [("lm_head.weight", (7, 4))],
]


def _weights(version: int) -> list[list[tuple[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(version)
    return [[(name, torch.randn(shape, generator=g).to(torch.bfloat16)) for name, shape in b]
            for b in MANIFEST]  # fmt: skip


def _rank(rank: int, world: int, out_dir: str) -> None:
    import os

    port = int(os.environ["MASTER_PORT"])
    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0,
                          timeout=timedelta(seconds=60))  # fmt: skip
    # A default world of this rank alone: the weight group must not depend on it.
    dist.init_process_group("gloo", store=dist.PrefixStore("own", store), rank=0, world_size=1)
    transfer = WeightTransfer(store, rank, world, "gloo", timeout_s=60)
    for version in (1, 2):  # two syncs over the same group
        if rank == 0:
            sent = transfer.send(iter(_weights(version)))
            assert sent == sum(t.numel() * 2 for b in _weights(version) for _, t in b)
            continue
        got = list(transfer.receive(MANIFEST, torch.bfloat16))
        want = [w for b in _weights(version) for w in b]
        assert [n for n, _ in got] == [n for n, _ in want]
        for (name, a), (_, b) in zip(got, want):
            assert a.shape == b.shape and a.dtype == torch.bfloat16, name
            assert torch.equal(a, b), name
    torch.save({"ok": rank}, f"{out_dir}/rank{rank}.pt")
    transfer.close()
    dist.destroy_process_group()


def test_every_generation_rank_receives_what_rank0_sends(tmp_path):
    run_ranks(_rank, 3, str(tmp_path), timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "rank2.pt"]


def test_a_platform_without_device_groups_is_refused_in_one_line():
    # vLLM's CPU platform builds no device (NCCL / HCCL) groups: asked for one, one line.
    from mindspeed_rl.errors import UserError

    with pytest.raises(UserError, match="CpuPlatform cannot build a nccl group"):
        WeightTransfer(dist.HashStore(), 0, 1, "nccl")
