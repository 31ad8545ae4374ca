"""cli/plot_metrics.py as a user runs it: a logged run -> PNG curves; bad files -> one line, exit 2."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from mindspeed_rl.driver.metrics import (
    ACTOR_KL,
    RESPONSE_LENGTH_MAX,
    RESPONSE_LENGTH_MEAN,
    REWARD_ACCURACY,
    REWARD_MEAN,
    VAL_ACCURACY,
    LoggingConfig,
    MetricsLogger,
)
from tests.conftest import REPO_ROOT

CLI = [sys.executable, str(REPO_ROOT / "cli" / "plot_metrics.py")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )


def _log_run(run_dir: Path, iterations: int = 60, validate_every: int = 10) -> Path:
    """A run's metrics.jsonl as the trainer's MetricsLogger writes it: rising reward and
    accuracy, growing responses, KL drifting up, validation every few iterations."""
    cfg = LoggingConfig(dir=str(run_dir), tensorboard=False, console=False)
    with MetricsLogger(cfg, total_iterations=iterations) as logger:
        for i in range(1, iterations + 1):
            progress = i / iterations
            logger.log(
                i,
                {
                    REWARD_MEAN: 0.2 + 0.6 * progress + 0.05 * math.sin(i),
                    REWARD_ACCURACY: 0.1 + 0.7 * progress,
                    RESPONSE_LENGTH_MEAN: 150 + 200 * progress,
                    RESPONSE_LENGTH_MAX: 1024.0,
                    ACTOR_KL: 1e-3 * i,
                },
            )
            if i % validate_every == 0:
                logger.log(i, {VAL_ACCURACY: 0.3 + 0.4 * progress})
        return logger.path


def _assert_real_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert path.stat().st_size > 10_000, path  # axes, text and curves, not a blank canvas
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500
    assert pixels[..., :3].std() > 0.05  # not a single colour


def test_plots_every_figure_and_the_combined_curves(tmp_path):
    metrics = _log_run(tmp_path / "run")
    out = tmp_path / "plots"
    proc = _run(metrics, "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = ["reward", "accuracy", "response_length", "kl", "val_accuracy", "curves"]
    assert proc.stdout.split() == [str(out / f"{name}.png") for name in names]
    for name in names:
        _assert_real_png(out / f"{name}.png")


def test_defaults_to_the_metrics_directory_and_skips_absent_figures(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(f'{{"iteration": {i}, "time": 0, "reward/mean": {i / 10}}}\n' for i in range(5))
    )
    proc = _run(metrics)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["curves.png", "reward.png"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("<html>not metrics</html>\n", "metrics.jsonl:1 is not a JSON object"),
        ('{"iteration": 1, "loss": 2.0}\n', "has none of the plotted metrics"),
    ],
)
def test_bad_metrics_file_is_one_line_and_exit_2(tmp_path, content, needle):
    metrics = tmp_path / "metrics.jsonl"
    if content is not None:
        metrics.write_text(content)
    proc = _run(metrics, "--out", tmp_path / "plots")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("plot_metrics: error: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "plots").exists()
