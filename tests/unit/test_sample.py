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
