"""The trainer's periodic validation: the same metric code as cli/eval.py, format of the
greedy responses."""

from __future__ import annotations

from mindspeed_rl.trainer.grpo import validation_metrics


def _sample(accuracy: float, fmt: float) -> dict:
    return {"parts": {"gsm8k": accuracy, "format": fmt}}


def test_validation_format_is_of_the_greedy_responses():
    greedy = [[_sample(1.0, 1.0)], [_sample(0.0, 1.0)]]
    # Sampled responses: all badly formatted, a quarter right.
    sampled = [[_sample(1.0, 0.0), _sample(0.0, 0.0)], [_sample(0.0, 0.0), _sample(0.0, 0.0)]]
    metrics = validation_metrics(greedy, sampled, "gsm8k", "format")
    # pass@2: prompt 1 has 1 of 2 right (1 - C(1,2)/C(2,2) = 1), prompt 2 none: mean 0.5.
    assert metrics == {
        "val/accuracy": 0.5, "val/format": 1.0, "val/avg_at_k": 0.25, "val/pass_at_k": 0.5,
    }  # fmt: skip
    assert validation_metrics(greedy, None, "gsm8k", None) == {"val/accuracy": 0.5}
