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
