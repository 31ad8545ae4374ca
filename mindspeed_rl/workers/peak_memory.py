"""The highest memory in use during a phase, for the preflight's per-phase report.

A phase's peak is transient (an activation, a logits block, vLLM's KV cache while it is
awake) and neither the device's free memory nor a process's resident set keeps a high-water
mark that can be reset per phase on every kind of device; a daemon thread samples the current
figure instead. A peak shorter than the sampling interval can be missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class PeakMemory:
    """Samples ``read()`` every ``interval_s`` seconds; :meth:`take` returns the highest value
    since the previous :meth:`take` (or the start) and opens the next window."""

    def __init__(self, read: Callable[[], int], interval_s: float = 0.02) -> None:
        self._read = read
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._note(self._read())

    def _note(self, value: int) -> None:
        with self._lock:
            self._peak = max(self._peak, value)

    def take(self) -> int:
        now = self._read()
        with self._lock:
            peak, self._peak = max(self._peak, now), now
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
