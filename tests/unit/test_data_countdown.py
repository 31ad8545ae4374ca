"""The Countdown generator: seeded, and every target reachable."""

import pytest

from mindspeed_rl.data.countdown import CountdownConfig, generate_countdown
from mindspeed_rl.data.handlers import countdown_label
from mindspeed_rl.rewards.countdown import countdown_accuracy


def test_seeded_and_solvable():
    config = CountdownConfig(rows=300, seed=11)
    rows = generate_countdown(config)
    assert rows == generate_countdown(config)
    assert rows != generate_countdown(CountdownConfig(rows=300, seed=12))
    for row in rows:
        assert 3 <= len(row["nums"]) <= 4
        assert all(1 <= n <= 99 for n in row["nums"]) and 1 <= row["target"] <= 999
        response = f"<answer>{row['solution']}</answer>"
        assert (
            countdown_accuracy(response, countdown_label(row["nums"], row["target"])).value == 1.0
        )


def test_bad_config():
    with pytest.raises(ValueError, match="min_numbers"):
        CountdownConfig(min_numbers=5, max_numbers=4)
    with pytest.raises(ValueError, match="rows"):
        CountdownConfig(rows=0)
