"""cli/eval.py under torchrun (--infer-tp > 1): one HF export by rank 0 into a folder every
rank sees, not one per rank; rank 0's error reaches every rank. Real processes over gloo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from mindspeed_rl.errors import UserError
from mindspeed_rl.eval.run import on_rank0, shared_workdir
from mindspeed_rl.utils.spawn import run_ranks


def _rank(rank: int, world: int, log: str) -> None:
    dist.init_process_group("gloo")
    seen = []
    with shared_workdir(rank, world) as work:

        def export():
            (work / "hf").mkdir()  # a second export into the same folder would fail here
            with open(log, "a") as f:
                f.write(f"export by {rank}\n")
            return work / "hf", "megatron"

        hf_dir, kind = on_rank0(export, rank, world)
        assert hf_dir.is_dir() and kind == "megatron"  # visible to every rank
        seen.append(work)

        def broken():
            raise UserError("no such checkpoint")

        with pytest.raises(UserError, match="no such checkpoint"):
            on_rank0(broken, rank, world)
    dist.barrier()
    assert not seen[0].exists()  # rank 0 removed it after every rank was done
    with open(log, "a") as f:
        f.write(f"done {rank} {seen[0]}\n")
    dist.destroy_process_group()


def test_one_export_under_torchrun(tmp_path):
    log = tmp_path / "log.txt"
    run_ranks(_rank, 3, str(log), timeout=120)
    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("export")] == ["export by 0"]
    done = [line.split() for line in lines if line.startswith("done")]
    assert sorted(d[1] for d in done) == ["0", "1", "2"]
    assert len({d[2] for d in done}) == 1  # one folder for all ranks
    assert not Path(done[0][2]).exists()
