"""The preflight's cut-down config, its resume check and its per-phase peak sampler."""

from __future__ import annotations

import threading
import time

import pytest

from mindspeed_rl.config.grpo import load_config
from mindspeed_rl.driver.preflight import check_resumed, preflight_config
from mindspeed_rl.workers.peak_memory import PeakMemory


def _preset(*overrides: str):
    return load_config("grpo_smollm2_cpu", list(overrides)), list(overrides)


def test_preflight_takes_the_fewest_prompts_the_layout_accepts():
    cfg, overrides = _preset()
    small = preflight_config(cfg, overrides)
    # DP2 x micro-batch 8 = 16 samples per step, 8 samples per prompt: 2 prompts.
    assert small.data.prompts_per_iteration == 2 and small.trainer.mini_batch_size == 0
    assert small.trainer.iterations == 2 and small.sampling.max_tokens == 32
    assert small.trainer.val_interval == 0 and not small.trainer.export_hf
    assert small.trainer.output_dir.endswith("preflight")
    small.validate(check_files=False)
    # The run's config is left as it was.
    assert cfg.data.prompts_per_iteration == 8 and cfg.trainer.iterations == 30


def test_preflight_keeps_the_runs_mini_batches_per_iteration():
    cfg, overrides = _preset()
    cfg.trainer.mini_batch_size = 32  # as a preset would: 64 samples, 2 optimizer steps
    small = preflight_config(cfg, overrides)
    assert small.samples_per_iteration // small.trainer.mini_batch_size == 2
    assert small.data.prompts_per_iteration == 4 and small.trainer.mini_batch_size == 16
    small.validate(check_files=False)


def test_preflight_keeps_what_the_user_set():
    cfg, overrides = _preset("sampling.max_tokens=48", "data.prompts_per_iteration=4")
    small = preflight_config(cfg, overrides)
    assert small.sampling.max_tokens == 48 and small.data.prompts_per_iteration == 4
    # A mini-batch given on the command line stays; the prompts shrink to fill one.
    cfg, overrides = _preset("trainer.mini_batch_size=32")
    small = preflight_config(cfg, overrides)
    assert small.trainer.mini_batch_size == 32 and small.data.prompts_per_iteration == 4


def test_a_resume_that_loads_other_state_is_refused():
    saved = [[1.0, 2.0, 3.0], [4.0, 5.0, 3.0]]
    check_resumed(saved, [list(d) for d in saved])
    with pytest.raises(RuntimeError, match=r"rank\(s\) \[1\]"):
        check_resumed(saved, [[1.0, 2.0, 3.0], [4.0, 5.000001, 3.0]])


def test_peak_memory_sees_a_transient_peak_and_starts_a_new_window():
    value = {"now": 100}
    probe = PeakMemory(lambda: value["now"], interval_s=0.005)
    try:
        value["now"] = 1000  # a phase's short peak
        time.sleep(0.1)
        value["now"] = 200
        time.sleep(0.05)
        assert probe.take() == 1000
        assert probe.take() == 200  # the next window starts at what is in use now
    finally:
        probe.close()
    assert not any(t.name == "peak-memory" and t.is_alive() for t in threading.enumerate())


def test_report_shows_each_runs_seconds_the_worst_peak_and_the_plan_of_its_phase():
    from mindspeed_rl.driver.preflight import PreflightReport

    report = PreflightReport("cuda")
    report.add("update", 2.0, 3 * 2**30)
    report.add("update", 1.5, 5 * 2**30)
    report.add("sync", 0.5, 4 * 2**30)
    plans = {"this batch": {"training": 4 * 2**30, "rollout": 6 * 2**30}}
    head, update, sync = report.lines(plans)
    assert "peak device used" in head and "plan, this batch" in head
    assert update.split()[:4] == ["update", "2.0", "/", "1.5"] and "5.00 GB" in update
    assert update.endswith("4.00 GB training") and sync.endswith("6.00 GB rollout")
    assert report.peak.name == "update"
