"""examples/grpo/launch.sh refuses a multi-node launch it cannot do, in one line, before it
starts anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / "examples" / "grpo" / "launch.sh"


def _launch(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "NNODES", "NODE_RANK")}
    return subprocess.run(
        ["bash", str(LAUNCH)], env={**clean, "CONFIG": "grpo_smollm2_cpu", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_several_nodes_need_master_addr():
    proc = _launch(NNODES="2", NODE_RANK="1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs MASTER_ADDR" in lines[0], proc.stderr


@pytest.mark.parametrize("nnodes, rank", [("0", "0"), ("two", "0"), ("2", "2"), ("2", "-1")])
def test_bad_node_counts_are_refused(nnodes, rank):
    proc = _launch(NNODES=nnodes, NODE_RANK=rank, MASTER_ADDR="10.0.0.1")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("launch: NNODES=") and proc.stdout == ""
