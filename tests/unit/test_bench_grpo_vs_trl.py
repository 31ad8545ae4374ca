"""The multi-seed summary of bench/grpo_vs_trl.py: means and standard errors over seeds,
window means around the checkpoints, reward per minute, and reuse of earlier runs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "grpo_vs_trl.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("grpo_vs_trl_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side(acc: list[float], seconds: float) -> dict:
    return {
        "iteration_seconds": [seconds] * len(acc),
        "reward_mean": [a + 0.5 for a in acc],
        "reward_parts": {"gsm8k": acc, "format": [1.0] * len(acc)},
    }


def test_summary_over_seeds(bench):
    n = 10
    runs = {
        "1": {"ours": _side([0.0] * n, 20.0), "trl": _side([0.2] * n, 60.0)},
        "2": {"ours": _side([0.2] * n, 20.0), "trl": _side([0.2] * (n - 1) + [0.8], 60.0)},
    }
    out = bench.summarise(runs, "gsm8k", n)
    ours, trl = out["sides"]["ours"], out["sides"]["trl"]
    assert out["checkpoints"] == [10]
    assert ours["accuracy_at"]["10"]["mean"] == pytest.approx(0.1)
    assert ours["accuracy_at"]["10"]["se"] == pytest.approx(0.1)  # stdev 0.1414 / sqrt 2
    assert trl["accuracy_at"]["10"]["mean"] == pytest.approx(0.5)
    # Window 8..10 (clipped at the last iteration): seed 2 is (0.2 + 0.2 + 0.8) / 3.
    assert trl["accuracy_window_at"]["10"]["mean"] == pytest.approx((0.2 + 0.4) / 2)
    # TRL 0.5 - se 0.3 = 0.2 > ours 0.1.
    assert out["ours_accuracy_at_least_trl_minus_se"] == {"10": False}
    # Reward gained (last-5 mean - first) per minute: ours 0 (flat curves), TRL positive.
    assert ours["reward_gain_per_minute"]["mean"] == pytest.approx(0.0)
    gain_seed2 = ((0.7 * 4 + 1.3) / 5 - 0.7) / (n * 60 / 60)
    assert trl["reward_gain_per_minute"]["mean"] == pytest.approx(gain_seed2 / 2)
    assert math.isclose(out["reward_gain_per_minute_ratio"], 0.0, abs_tol=1e-12)


def test_reuse_takes_a_seed_from_a_multi_seed_report(bench, tmp_path):
    report = {"seeds": {"7": {"trl": _side([0.1] * 20, 30.0)}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    found = bench.reused_sides([path], 7, 10)
    assert list(found) == ["trl"]
    assert len(found["trl"]["reward_parts"]["gsm8k"]) == 10
    assert bench.reused_sides([path], 8, 10) == {}
    assert bench.reused_sides([path], 7, 30) == {}  # too few iterations to reuse
