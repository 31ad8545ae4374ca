"""Checkpoint files are read without unpickling code: a .pt that would run code on load is
refused in one line and the code does not run."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mindspeed_rl.errors import UserError


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    from mindspeed_rl.workers.actor_worker import load_checkpoint_file

    marker = tmp_path / "pwned"
    bad = tmp_path / "rank_00000.pt"
    torch.save({"torch": torch.zeros(1), "evil": _Payload(str(marker))}, bad)
    with pytest.raises(UserError, match="rank_00000.pt: not a plain checkpoint file"):
        load_checkpoint_file(bad)
    assert not marker.exists()
    with pytest.raises(UserError, match="missing; the checkpoint is incomplete"):
        load_checkpoint_file(tmp_path / "absent.pt")


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    from mindspeed_rl.workers.actor_worker import _tuples, load_checkpoint_file

    random.seed(3)
    np.random.seed(4)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    saved = {"python": random.getstate(),
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}  # fmt: skip
    expected = (random.random(), np.random.rand())
    torch.save(saved, tmp_path / "rng.pt")
    rng = load_checkpoint_file(tmp_path / "rng.pt")
    random.setstate(_tuples(rng["python"]))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    assert (random.random(), np.random.rand()) == expected
