"""What every benchmark adds to its report, and how it hands the report over."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def emit(report: dict, out: Path | None) -> None:
    """Stamp ``report`` with the machine and time, print it as JSON, write it to ``out``."""
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    report["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    # Paths inside the checkout are written relative to it: results are committed.
    text = json.dumps(report, indent=2).replace(str(REPO_ROOT) + "/", "")
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
