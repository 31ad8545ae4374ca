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


def test_training_state_metadata_that_runs_code_is_refused(tmp_path):
    # torch.distributed.checkpoint unpickles .metadata; it is checked first against what
    # torch writes there, so a planted pickle neither loads nor runs.
    import pickle

    import torch.distributed.checkpoint as dcp

    from mindspeed_rl.training.checkpoint import check_metadata

    good = tmp_path / "good"
    dcp.save({"w": torch.arange(4.0)}, checkpoint_id=str(good), no_dist=True)
    check_metadata(good)
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ".metadata").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(UserError, match=r"\.metadata: refused .*posix\.mkdir"):
        check_metadata(bad)
    assert not marker.exists()
    with pytest.raises(UserError, match="missing; the checkpoint is incomplete"):
        check_metadata(tmp_path)


def test_a_resume_megatron_cannot_map_is_refused_in_one_line(tmp_path):
    from mindspeed_rl.training.checkpoint import check_resumable

    saved = {"tp": 1, "ep": 1, "padded_vocab_size": 151936, "distributed_optimizer": True,
             "optimizers": 1}  # fmt: skip
    check_resumable(saved, {**saved, "tp": 4, "ep": 2, "optimizers": 2}, tmp_path)
    with pytest.raises(UserError, match="padded to 151936 rows; TP2 pads it to 152064"):
        check_resumable(saved, {**saved, "tp": 2, "padded_vocab_size": 152064}, tmp_path)
    with pytest.raises(UserError, match="use_distributed_optimizer=true"):
        check_resumable(saved, {**saved, "distributed_optimizer": False}, tmp_path)
    replicated = {**saved, "distributed_optimizer": False}
    with pytest.raises(UserError, match="between EP1 and EP > 1"):
        check_resumable(replicated, {**replicated, "ep": 2, "optimizers": 2}, tmp_path)


def test_a_checkpoint_of_the_old_format_is_refused_before_workers_start(tmp_path):
    from mindspeed_rl.driver.grpo import check_training_state

    old = tmp_path / "iter_0000004"
    (old / "optimizer").mkdir(parents=True)
    with pytest.raises(UserError, match="older mindspeed-rl .* trainer.resume=never"):
        check_training_state(old)
    (old / "dist_ckpt").mkdir()
    check_training_state(old)
