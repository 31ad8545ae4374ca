"""The typed sample record and its batch: columns for the actor, new records per phase."""

from __future__ import annotations

import pickle

import pytest

from mindspeed_rl.rewards.base import RewardResult
from mindspeed_rl.sample import Batch, Finish, Sample


def _batch() -> Batch:
    return Batch.from_columns(
        [[1, 2], [1, 2, 3]], [[7], [8, 9]], rollout_logprobs=[[-1.0], [-2.0, -3.0]]
    )


def test_columns_and_with_column_make_new_records():
    batch = _batch()
    assert batch.prompt_ids == [[1, 2], [1, 2, 3]] and batch.response_ids == [[7], [8, 9]]
    assert batch.advantages is None and batch.old_logprobs is None
    assert batch.rollout_logprobs == [[-1.0], [-2.0, -3.0]]
    filled = batch.with_column("advantage", [0.5, -0.5])
    assert filled.advantages == [0.5, -0.5] and batch.advantages is None  # the old one untouched
    assert [s.tokens for s in filled] == [3, 5]
    with pytest.raises(AttributeError):
        filled[0].advantage = 1.0  # frozen
    with pytest.raises(KeyError, match="no field 'advantages'"):
        batch.with_column("advantages", [1.0, 2.0])
    with pytest.raises(ValueError, match="1 values of advantage for 2 samples"):
        batch.with_column("advantage", [1.0])


def test_a_column_set_on_some_samples_only_is_refused():
    batch = _batch()
    partial = Batch((batch[0], batch.with_column("advantage", [1.0, 2.0])[1]))
    with pytest.raises(ValueError, match="advantage is set on some samples"):
        _ = partial.advantages


def test_reward_total_includes_shaping_and_needs_a_score():
    s = Sample(prompt_ids=[1], label="2", group=0, version=3, response_ids=[5],
               rollout_logprobs=[-0.1], finish=Finish("length"))  # fmt: skip
    with pytest.raises(ValueError, match="not scored yet"):
        _ = s.total_reward
    from dataclasses import replace

    s = replace(s, reward=RewardResult(1.0, {"math": 1.0}, {"math": ""}), penalty=-0.25, text="x")
    assert s.total_reward == 0.75 and s.finish is Finish.LENGTH
    view = Batch((s,)).training_view()
    assert view[0].reward is None and view[0].text == "" and view[0].rollout_logprobs == [-0.1]
    assert pickle.loads(pickle.dumps(Batch((s,)))) == Batch((s,))  # ships through Ray


def test_a_scored_sample_survives_json_exactly():
    import json

    from mindspeed_rl.rewards.base import RewardResult
    from mindspeed_rl.sample import Finish, Sample

    s = Sample(prompt_ids=[1, 2], label="4", group=3, version=7, response_ids=[5],
               rollout_logprobs=[-0.1234567890123], finish=Finish.LENGTH,
               reward=RewardResult(0.1 + 0.2, {"math": 0.30000000000000004}, {"math": "x"}),
               text="t", penalty=-0.5, advantage=1 / 3)  # fmt: skip
    back = Sample.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s and back.finish is Finish.LENGTH
    unscored = Sample(prompt_ids=[1], label="", group=0, version=0, response_ids=[],
                      rollout_logprobs=None, finish=Finish.STOP)  # fmt: skip
    assert Sample.from_json(json.loads(json.dumps(unscored.to_json()))) == unscored
