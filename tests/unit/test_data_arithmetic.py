import pytest

from mindspeed_rl.data.arithmetic import ArithmeticConfig, generate_arithmetic


def test_splits_are_disjoint_complete_and_seeded():
    config = ArithmeticConfig(seed=3, first_min=10, first_max=40, second_min=1, second_max=9)
    train, test = generate_arithmetic(config)
    assert len(test) == config.test_rows
    assert len(train) + len(test) == config.space() == 2 * 31 * 9
    questions = [r["question"] for r in train + test]
    assert len(set(questions)) == len(questions)
    assert (train, test) == generate_arithmetic(config)
    assert test != generate_arithmetic(ArithmeticConfig(seed=4, first_max=40))[1]


def test_labels_are_the_answers():
    train, test = generate_arithmetic(ArithmeticConfig(ops="-", test_rows=5))
    assert "What is 57 - 8?" in {r["question"] for r in train + test}
    for row in train + test:
        a, op, b = row["question"].removeprefix("What is ").rstrip("?").split()
        assert op == "-" and row["label"] == str(int(a) - int(b))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ops": "*"}, "ops must be made of"),
        ({"first_min": 50, "first_max": 10}, "min <= max"),
        ({"test_rows": 0}, "test_rows must be >= 1"),
        ({"first_max": 10, "second_max": 1, "test_rows": 2}, "leaves no training questions"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArithmeticConfig(**kwargs)
