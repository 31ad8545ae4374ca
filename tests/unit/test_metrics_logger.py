"""MetricsLogger on real files: JSONL rows, resume truncation, TensorBoard events, console."""

from __future__ import annotations

import io
import json
import math
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from mindspeed_rl.driver.metrics import (
    ACTOR_CLIP_FRAC,
    ACTOR_ENTROPY,
    ACTOR_KL,
    ACTOR_PG_LOSS,
    METRICS_FILE,
    RESPONSE_LENGTH_MEAN,
    REWARD_ACCURACY,
    REWARD_FORMAT,
    REWARD_MEAN,
    TIMING_STEP,
    VAL_ACCURACY,
    LoggingConfig,
    MetricsLogger,
    duration,
    load_metrics,
    reward_part,
    timing,
)
from mindspeed_rl.errors import UserError


def config(tmp_path: Path, **overrides) -> LoggingConfig:
    fields = {"dir": str(tmp_path / "run"), "tensorboard": False, "console": False}
    return LoggingConfig(**(fields | overrides))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_rows_are_written_and_flushed_each_iteration(tmp_path):
    logger = MetricsLogger(config(tmp_path))
    before = time.time()
    logger.log(1, {REWARD_MEAN: 0.25, reward_part("format"): torch.tensor(0.5), "n": 3})
    # Readable before close: a killed run keeps what it logged.
    logger.log(2, {REWARD_MEAN: torch.tensor([0.75]), ACTOR_KL: float("nan"), timing("gen"): 1})
    got = rows(logger.path)
    logger.close()
    assert logger.path == tmp_path / "run" / METRICS_FILE
    assert [row["iteration"] for row in got] == [1, 2]
    assert before - 1 <= got[0]["time"] <= time.time() + 1
    assert {k: v for k, v in got[0].items() if k != "time"} == {
        "iteration": 1,
        "reward/mean": 0.25,
        "reward/format": 0.5,
        "n": 3.0,
    }
    assert got[1]["reward/mean"] == 0.75
    assert got[1]["actor/kl"] is None  # strict JSON: NaN is written as null
    assert got[1]["timing/gen"] == 1.0


def test_resume_truncates_rows_after_the_checkpoint(tmp_path):
    with MetricsLogger(config(tmp_path)) as logger:
        for iteration in range(1, 6):
            logger.log(iteration, {REWARD_MEAN: iteration / 10})
    path = tmp_path / "run" / METRICS_FILE
    with path.open("a") as f:
        f.write('{"iteration": 6, "reward/me')  # torn line of a run killed mid-write

    with MetricsLogger(config(tmp_path), resume_iteration=3) as logger:
        assert [row["iteration"] for row in rows(path)] == [1, 2, 3]
        with pytest.raises(ValueError, match="before the last one logged"):
            logger.log(2, {REWARD_MEAN: 0.0})
        logger.log(4, {REWARD_MEAN: 0.99})
    got = rows(path)
    assert [row["iteration"] for row in got] == [1, 2, 3, 4]
    assert [row["reward/mean"] for row in got] == [0.1, 0.2, 0.3, 0.99]


def test_fresh_run_starts_the_file_over(tmp_path):
    with MetricsLogger(config(tmp_path)) as logger:
        logger.log(1, {REWARD_MEAN: 0.1})
    with MetricsLogger(config(tmp_path)) as logger:
        assert logger.path.read_text() == ""
        logger.log(0, {VAL_ACCURACY: 0.2})
    assert [row["iteration"] for row in rows(logger.path)] == [0]


def test_non_scalar_metrics_are_refused_by_name(tmp_path):
    with MetricsLogger(config(tmp_path)) as logger:
        with pytest.raises(ValueError, match="metric 'reward/mean' must be a scalar"):
            logger.log(1, {REWARD_MEAN: torch.ones(3)})
        with pytest.raises(ValueError, match="metric 'tag' must be a number"):
            logger.log(1, {"tag": "0.5"})


def test_tensorboard_events_are_written_and_a_resume_replaces_repeated_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(config(tmp_path, tensorboard=True)) as logger:
        for iteration in range(1, 6):
            logger.log(iteration, {REWARD_MEAN: float(iteration), ACTOR_KL: 0.01})
    tb_dir = tmp_path / "run" / "tensorboard"
    assert list(tb_dir.glob("events.out.tfevents.*"))

    # Resume from iteration 3: iterations 4 and 5 are logged again with other values.
    # TensorBoard reads event files in name order, whose first field is the creation second;
    # a real resume is a later process, so make the second file's name sort after the first.
    time.sleep(1.1)
    with MetricsLogger(config(tmp_path, tensorboard=True), resume_iteration=3) as logger:
        for iteration in (4, 5):
            logger.log(iteration, {REWARD_MEAN: 10.0 * iteration, ACTOR_KL: 0.02})

    events = EventAccumulator(str(tb_dir))
    events.Reload()
    assert {REWARD_MEAN, ACTOR_KL} <= set(events.Tags()["scalars"])
    reward = [(e.step, e.value) for e in events.Scalars(REWARD_MEAN)]
    assert reward == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]


def test_console_prints_a_line_per_iteration_without_a_terminal(tmp_path, capsys):
    with MetricsLogger(config(tmp_path, console=True), total_iterations=3) as logger:
        logger.log(
            1,
            {
                REWARD_MEAN: 0.5,
                REWARD_ACCURACY: 0.25,
                RESPONSE_LENGTH_MEAN: 212.0,
                ACTOR_KL: 0.0012,
                TIMING_STEP: 41.2,
            },
        )
        logger.log(1, {VAL_ACCURACY: 0.375})
        logger.log(2, {REWARD_MEAN: 0.75, REWARD_FORMAT: 0.5, TIMING_STEP: 20.0})
        logger.message("checkpoint runs/r1/checkpoints/iter_0000002")
        logger.log(3, {REWARD_MEAN: 1.0, TIMING_STEP: 30.0})
    err = capsys.readouterr().err.splitlines()
    # ETA: remaining iterations x the mean step so far, the first (warm-up) step left out
    # once there are others: 2 x 41.2 s after step 1, 1 x 20 s after step 2, none at the end.
    assert err == [
        "[iteration 1/3] reward=0.5 acc=0.25 len=212 kl=0.0012 s/it=41.2 eta=1m22s",
        "[iteration 1/3] val/accuracy=0.375",
        "[iteration 2/3] reward=0.75 fmt=0.5 s/it=20 eta=20s",
        "checkpoint runs/r1/checkpoints/iter_0000002",
        "[iteration 3/3] reward=1 s/it=30",
    ]


def test_console_lines_go_to_the_stream_given(tmp_path, capsys):
    stream = io.StringIO()
    with MetricsLogger(
        config(tmp_path, console=True), total_iterations=1, console_stream=stream
    ) as logger:
        logger.message("mindspeed-rl GRPO: grpo -> runs/r1")
        logger.log(1, {REWARD_MEAN: 0.5, TIMING_STEP: 2.0})
    assert stream.getvalue().splitlines() == [
        "mindspeed-rl GRPO: grpo -> runs/r1",
        "[iteration 1/1] reward=0.5 s/it=2",
    ]
    assert capsys.readouterr().err == ""


def test_duration_reads_at_a_glance():
    assert [duration(s) for s in (0.4, 42, 365, 3725)] == ["0s", "42s", "6m05s", "1h02m"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_shows_a_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with MetricsLogger(config(tmp_path, console=True), total_iterations=4) as logger:
        logger.log(1, {REWARD_MEAN: 0.5, TIMING_STEP: 2.0})
        logger.log(2, {REWARD_MEAN: 0.625, TIMING_STEP: 2.0})
    out = terminal.getvalue()
    assert "2/4" in out and "reward=0.625" in out and "s/it=2" in out


def test_optional_backends_warn_when_missing(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "swanlab", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with MetricsLogger(config(tmp_path, tensorboard=True, swanlab=True, wandb=True)) as logger:
        logger.log(1, {REWARD_MEAN: 0.5})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "tensorboard is not installed; TensorBoard logging is off",
        "logging.swanlab is on but swanlab is not installed; swanlab logging is off",
        "logging.wandb is on but wandb is not installed; wandb logging is off",
    ]
    assert rows(logger.path)[0]["reward/mean"] == 0.5


def test_swanlab_runs_offline_in_the_run_directory(tmp_path, monkeypatch):
    # swanlab is not a dependency; a stand-in module records how it is driven.
    calls: list[tuple] = []
    swanlab = types.ModuleType("swanlab")
    swanlab.init = lambda **kwargs: calls.append(("init", kwargs))
    swanlab.log = lambda data, step: calls.append(("log", data, step))
    swanlab.finish = lambda: calls.append(("finish",))
    monkeypatch.setitem(sys.modules, "swanlab", swanlab)
    cfg = config(tmp_path, swanlab=True, project="p", experiment="e")
    with MetricsLogger(cfg, run_config={"lr": 1e-6}) as logger:
        logger.log(7, {REWARD_MEAN: 0.5})
    assert calls == [
        (
            "init",
            {
                "project": "p",
                "experiment_name": "e",
                "logdir": str(tmp_path / "run" / "swanlog"),
                "mode": "offline",
                "config": {"lr": 1e-6},
            },
        ),
        ("log", {REWARD_MEAN: 0.5}, 7),
        ("finish",),
    ]


def test_load_metrics_merges_rows_of_one_iteration_and_ignores_a_torn_tail(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text(
        '{"iteration": 1, "time": 1.0, "reward/mean": 0.5}\n'
        '{"iteration": 0, "time": 0.5, "val/accuracy": 0.1}\n'
        '{"iteration": 1, "time": 2.0, "val/accuracy": 0.2}\n'
        '{"iteration": 2, "rew'
    )
    got = load_metrics(path)
    assert got == [
        {"iteration": 0, "time": 0.5, "val/accuracy": 0.1},
        {"iteration": 1, "time": 2.0, "reward/mean": 0.5, "val/accuracy": 0.2},
    ]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ('{"iteration": 1}\nnot json\n{"iteration": 2}\n', ":2 is not a JSON object"),
        ('{"step": 1}\n', ":1 is not a JSON object with an integer 'iteration'"),
    ],
)
def test_load_metrics_refuses_bad_files(tmp_path, content, needle):
    path = tmp_path / METRICS_FILE
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=needle):
        load_metrics(path)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"dir": " "}, "logging.dir is empty"),
        ({"tensorboard": "yes"}, "logging.tensorboard must be true or false"),
        ({"project": ""}, "logging.project must be a non-empty name"),
    ],
)
def test_logging_config_rejects_bad_values(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        LoggingConfig(**overrides)


def test_the_loss_reports_under_the_logged_names():
    from mindspeed_rl.algorithms import GRPOLossConfig, grpo_loss

    logprobs_NT = torch.full((1, 2), -1.0)
    _, metrics = grpo_loss(
        logprobs_NT,
        logprobs_NT,
        logprobs_NT,
        torch.ones(1, 2),
        torch.ones(1, 2),
        torch.ones(1, 2),
        GRPOLossConfig(),
    )
    assert {ACTOR_KL, ACTOR_CLIP_FRAC, ACTOR_ENTROPY, ACTOR_PG_LOSS} <= set(metrics)
    assert all(math.isfinite(float(v)) for v in metrics.values())
