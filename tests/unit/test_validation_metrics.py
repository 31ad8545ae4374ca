"""The trainer's periodic validation and rollout metrics: the same metric code as
cli/eval.py, format of the greedy responses, token-mean engine NLL."""

from __future__ import annotations

from mindspeed_rl.driver.grpo import rollout_metrics, validation_metrics
from mindspeed_rl.rewards.base import RewardResult
from mindspeed_rl.sample import Batch, Finish, Sample


def _sample(accuracy: float, fmt: float, response=(5,), logprobs=None, finish=Finish.STOP):
    parts = {"gsm8k": accuracy, "format": fmt}
    return Sample(prompt_ids=[1], label="", group=0, version=0, response_ids=list(response),
                  rollout_logprobs=logprobs, finish=finish,
                  reward=RewardResult(accuracy + 0.1 * fmt, parts, {}))  # fmt: skip


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
    batch = Batch((
        _sample(1.0, 1.0, [5, 6, 7], [-0.5, -1.0, -1.5]),
        _sample(0.0, 1.0, [8], [-3.0], Finish.LENGTH),
    ))  # fmt: skip
    m = rollout_metrics(batch, "gsm8k", "format")
    # Per token (6 / 4 tokens), not per response (mean of 1.0 and 3.0 would be 2.0).
    assert m["rollout/nll"] == 1.5
    assert m["reward/accuracy"] == 0.5 and m["response_length/clip_ratio"] == 0.5
    assert m["reward/format"] == 1.0 and abs(m["reward/mean"] - 0.6) < 1e-12
    # reward/accuracy is whichever scorer has the accuracy role.
    assert rollout_metrics(batch, "format", None)["reward/accuracy"] == 1.0
