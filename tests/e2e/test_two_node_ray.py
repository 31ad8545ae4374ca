"""A 2-node Ray cluster on loopback (two `ray start` processes, one CPU each) completes a
training iteration with one rank on each node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mindspeed_rl.utils.spawn import free_port
from tests.e2e.conftest import failure_report, run_env, train_command

pytestmark = pytest.mark.slow


def _ray(*args: str, env: dict) -> subprocess.CompletedProcess:
    ray_bin = Path(sys.executable).parent / "ray"
    return subprocess.run(
        [str(ray_bin), *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_iteration_across_two_ray_nodes(tmp_path, tiny_chat_model, gsm8k_prompts):
    env = run_env()
    # A private Ray session in a short temp dir (Ray's socket paths must fit in 107 bytes).
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # Loopback only: no cluster token to hand around (a real cluster shares RAY_AUTH_TOKEN).
    env["RAY_AUTH_MODE"] = "disabled"
    port = free_port()
    head = _ray("start", "--head", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                "--include-dashboard=false", f"--temp-dir={ray_tmp}", env=env)  # fmt: skip
    assert head.returncode == 0, head.stderr[-3000:]
    try:
        worker = _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                      "--node-ip-address=127.0.0.1", env=env)  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-3000:]
        out = tmp_path / "run"
        cmd = train_command(
            tiny_chat_model, gsm8k_prompts, out, "trainer.iterations=1", "trainer.export_hf=false",
            "resources.nnodes=2", "resources.devices_per_node=1",
            f"resources.ray_address=127.0.0.1:{port}",
        )  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, failure_report(proc, out)
        placement = json.loads((out / "placement.json").read_text())
        assert [p["rank"] for p in placement] == [0, 1]
        assert len({p["node_id"] for p in placement}) == 2, placement
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["iteration"] == 1 and rows[0]["actor/grad_norm"] > 0
    finally:
        _ray("stop", "--force", env=env)
        shutil.rmtree(ray_tmp, ignore_errors=True)
