"""The driver's waits on Ray: the first rank to fail ends the call (while another rank would
wait forever in a collective), and an unplaceable layout stops with what is missing."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_the_first_failure_wins_over_a_rank_that_hangs(ray_local):
    from mindspeed_rl.workers.group import wait_all

    ray = ray_local

    @ray.remote
    def hangs():
        time.sleep(600)

    @ray.remote
    def fails():
        time.sleep(0.5)
        raise RuntimeError("rank 1: out of memory in the update")

    @ray.remote
    def fine(x):
        return x

    assert wait_all([fine.remote(1), fine.remote(2)]) == [1, 2]
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="rank 1: out of memory"):
        wait_all([hangs.remote(), fails.remote()])
    assert time.monotonic() - began < 60


def test_an_unplaceable_layout_stops_with_what_is_missing(ray_local, tmp_path):
    from mindspeed_rl.config.grpo import GRPOConfig
    from mindspeed_rl.errors import UserError
    from mindspeed_rl.workers.group import WorkerGroup

    cfg = GRPOConfig()
    cfg.resources.cpus_per_worker = 64.0  # the local Ray has 2
    cfg.resources.placement_timeout_s = 2.0
    cfg.trainer.output_dir = str(tmp_path / "run")
    began = time.monotonic()
    with pytest.raises(UserError, match=r"could not place 2 ranks of \{'CPU': 64.0\} within 2 s"):
        WorkerGroup(cfg, tmp_path / "ckpt", tmp_path / "meta")
    assert time.monotonic() - began < 60
