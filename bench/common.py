"""What every benchmark adds to its report, and how it hands the report over."""

from __future__ import annotations

import json
import os
import platform
import threading
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


class PeakRSS:
    """Samples this process's RSS every ``interval`` seconds in a thread while active; ``peak``
    is the largest seen (starting from the RSS at entry)."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
