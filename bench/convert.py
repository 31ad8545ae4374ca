"""Time and peak RSS of hf2mcore and mcore2hf on the bundled SmolLM2-135M, as JSON.

Each direction runs in a fresh subprocess so its peak RSS is its own.

    python bench/convert.py [--tp 3] [--pp 2] [--model models/SmolLM2-135M-Instruct]

SmolLM2-135M has 9 attention heads and 3 KV heads, so its TP must divide 3 (TP=2 cannot).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import emit  # noqa: E402


def _model_bytes(model_dir: Path) -> int:
    return sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))


def _timed(args: list[str]) -> dict:
    code = (
        "import resource, sys, time, runpy; t = time.time(); sys.argv = {argv!r}; "
        "rc = 0\ntry:\n    runpy.run_path({cli!r}, run_name='__main__')\n"
        "except SystemExit as e:\n    rc = e.code or 0\n"
        "print('BENCH', time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)"
    ).format(argv=["convert_ckpt", *args], cli=str(REPO / "cli" / "convert_ckpt.py"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH"))
    _, seconds, maxrss_kb, rc = line.split()
    if rc != "0":
        raise SystemExit(f"convert_ckpt {args[0]} failed with exit code {rc}")
    return {"seconds": round(float(seconds), 2), "peak_rss_bytes": int(maxrss_kb) * 1024}


def _baseline_rss() -> int:
    """RSS of a process that has imported torch and the converter, before any weights."""
    code = (
        "import resource, mindspeed_rl.checkpoint.convert; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return int(out.stdout.strip()) * 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=REPO / "models" / "SmolLM2-135M-Instruct")
    parser.add_argument("--tp", type=int, default=3)
    parser.add_argument("--pp", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    model_bytes = _model_bytes(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        mcore, back = Path(tmp) / "mcore", Path(tmp) / "hf"
        to_mcore = _timed(
            ["hf2mcore", "--load-dir", str(args.model), "--save-dir", str(mcore),
             "--tp", str(args.tp), "--pp", str(args.pp)]
        )  # fmt: skip
        to_hf = _timed(["mcore2hf", "--load-dir", str(mcore), "--save-dir", str(back)])
    baseline = _baseline_rss()
    result = {
        "bench": "convert",
        "model": args.model.name,
        "tp": args.tp,
        "pp": args.pp,
        "model_bytes": model_bytes,
        "process_baseline_rss_bytes": baseline,
        "hf2mcore": {
            **to_mcore,
            "peak_rss_over_model": round(to_mcore["peak_rss_bytes"] / model_bytes, 3),
        },
        "mcore2hf": {
            **to_hf,
            "peak_rss_over_model": round(to_hf["peak_rss_bytes"] / model_bytes, 3),
        },
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
