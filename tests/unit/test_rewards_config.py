"""RewardConfig validation and scorer resolution."""

import pytest

from mindspeed_rl.rewards.registry import SCORERS, RewardConfig, resolve_scorer


def test_defaults_are_valid():
    config = RewardConfig()
    assert config.scorers == {"math": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scorers": {}}, "empty"),
        ({"scorers": {"nope": 1.0}}, "unknown scorer 'nope'"),
        ({"scorers": {"math": "x"}}, "weight must be a number"),
        ({"scorers": {"math": float("nan")}}, "weight must be a number"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"workers": 0}, "workers"),
        ({"memory_limit_mb": 10}, "memory_limit_mb"),
        ({"scorers": {"os:no_such_function": 1.0}}, "cannot be imported"),
    ],
)
def test_bad_values_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig(**kwargs)


def test_module_function_scorers():
    assert resolve_scorer("mindspeed_rl.rewards.math:math_accuracy") is SCORERS["math"]


def test_scorer_roles_default_from_the_builtins_and_can_be_named():
    from mindspeed_rl.rewards.registry import RewardConfig

    config = RewardConfig(scorers={"format_lenient": 0.1, "gsm8k": 1.0})
    assert config.accuracy_scorer == "gsm8k" and config.format_scorer == "format_lenient"
    assert RewardConfig(scorers={"math": 1.0}).format_scorer is None
    named = RewardConfig(scorers={"math": 1.0, "countdown": 1.0}, accuracy="countdown")
    assert named.accuracy_scorer == "countdown"
    with pytest.raises(ValueError, match=r"reward.format='format' is not one of reward.scorers"):
        RewardConfig(scorers={"math": 1.0}, format="format")


def test_advantage_estimators_by_name_and_their_group_size():
    from mindspeed_rl.config.grpo import AlgorithmConfig, GRPOConfig
    from mindspeed_rl.errors import UserError

    with pytest.raises(ValueError, match="algorithm.advantage must be one of grpo, drgrpo"):
        AlgorithmConfig(advantage="ppo")
    cfg = GRPOConfig()
    cfg.sampling.n = 1
    cfg.algorithm.advantage = "drgrpo"
    cfg.validate(check_files=False)  # r - mean is defined for one sample
    cfg.algorithm.advantage = "grpo"
    with pytest.raises(UserError, match="algorithm.advantage=grpo needs sampling.n >= 2"):
        cfg.validate(check_files=False)


def _nan_scorer(response: str, label: str):
    return float("nan")


def _float_scorer(response: str, label: str):
    return 0.25


def _text_scorer(response: str, label: str):
    return "right"


def test_scorers_returning_numbers_or_non_finite_values(monkeypatch):
    # Scorers named module:function run in the pool's worker processes, which import this
    # module by name: the repository root is on their path (tests/ is a package).
    from mindspeed_rl.errors import UserError
    from mindspeed_rl.rewards.registry import RewardScorer

    module = "tests.unit.test_rewards_config"
    with RewardScorer(RewardConfig(scorers={f"{module}:_float_scorer": 1.0}, workers=1)) as s:
        assert s.score_batch(["x"], ["y"])[0].total == 0.25  # a plain float is its value
    for name, message in (("_nan_scorer", r"gave nan for response 0"),
                          ("_text_scorer", r"returned str, not a Score or a number")):  # fmt: skip
        config = RewardConfig(scorers={f"{module}:{name}": 1.0}, workers=1)
        with RewardScorer(config) as scorer, pytest.raises(UserError, match=message):
            scorer.score_batch(["a response"], ["label"])


def test_a_batch_scored_by_other_scorers_than_the_configured_ones():
    # A held-out set with its own scorer: the batch's parts and total come from the scorers
    # passed in, not from reward.scorers.
    from mindspeed_rl.rewards.registry import RewardConfig, RewardScorer

    with RewardScorer(RewardConfig(scorers={"math": 1.0}, workers=1)) as scorer:
        texts = ["<think>x</think> <answer>(C)</answer>", "<think>x</think> <answer>B</answer>"]
        results = scorer.score_batch(texts, ["C", "C"], scorers={"choice": 1.0, "format": 0.0})
    assert [r.parts["choice"] for r in results] == [1.0, 0.0]
    assert [r.total for r in results] == [1.0, 0.0]
    assert all(r.parts["format"] == 1.0 and "math" not in r.parts for r in results)
