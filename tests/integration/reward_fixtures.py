"""Misbehaving scorers for the reward pool tests, importable by the scorer worker processes."""

import os
import time

from mindspeed_rl.rewards.base import Score


def hang_or_crash(response: str, label: str) -> Score:
    """Hangs on "hang", kills its process on "crash", raises on "raise", else scores 1."""
    if response == "hang":
        while True:
            time.sleep(0.1)
    if response == "crash":
        os._exit(3)
    if response == "raise":
        raise RuntimeError("scorer bug")
    return Score(1.0)
