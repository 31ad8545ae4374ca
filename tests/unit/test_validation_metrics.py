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


def test_rollout_nll_is_the_token_mean_of_the_engine_logprobs():
    from mindspeed_rl.trainer.grpo import COLUMNS, rollout_metrics
    from mindspeed_rl.trainer.transfer_dock import TransferDock

    dock = TransferDock(2, COLUMNS)
    dock.put("response", [0, 1], [[5, 6, 7], [8]])
    dock.put("rollout_logprobs", [0, 1], [[-0.5, -1.0, -1.5], [-3.0]])
    dock.put("finish", [0, 1], ["stop", "length"])
    dock.put("reward", [0, 1], [1.0, 0.0])
    dock.put("parts", [0, 1], [{"gsm8k": 1.0, "format": 1.0}, {"gsm8k": 0.0, "format": 0.0}])
    m = rollout_metrics(dock, "gsm8k")
    # Per token (6 / 4 tokens), not per response (mean of 1.0 and 3.0 would be 2.0).
    assert m["rollout/nll"] == 1.5
    assert m["reward/accuracy"] == 0.5 and m["response_length/clip_ratio"] == 0.5
