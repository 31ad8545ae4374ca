"""On NPU a worker imports torch_npu's ``transfer_to_npu`` before megatron-core is imported
(megatron-core's RNG tracker binds ``torch.cuda._lazy_call`` at import). No NPU here: a
stand-in ``torch_npu`` package records what was imported when its mapping was."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_worker_maps_the_npu_before_megatron_is_imported(tmp_path):
    contrib = tmp_path / "torch_npu" / "contrib"
    contrib.mkdir(parents=True)
    (tmp_path / "torch_npu" / "__init__.py").write_text("")
    (contrib / "__init__.py").write_text("")
    record = tmp_path / "seen.txt"
    (contrib / "transfer_to_npu.py").write_text(
        f"import sys\nopen({str(record)!r}, 'w').write(str('megatron.core' in sys.modules))\n"
    )
    script = textwrap.dedent(
        """
        from mindspeed_rl.workers.actor_worker import HybridActorWorker
        HybridActorWorker(0, 1, 0, 1, "npu")
        from mindspeed_rl.training import parallel  # what setup() imports next
        """
    )
    # The stand-in has no torch.npu: the rest of the worker runs as on CPU.
    env = {
        "PYTHONPATH": f"{tmp_path}:{REPO}",
        "PATH": "/usr/bin:/bin",
        "MINDSPEED_RL_DEVICE": "cpu",
    }
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert record.read_text() == "False"  # mapped, and megatron-core not yet imported
