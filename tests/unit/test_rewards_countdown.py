"""Countdown scorer and its safe arithmetic evaluator."""

import json
from fractions import Fraction

import pytest

from mindspeed_rl.rewards.countdown import (
    ExpressionError,
    countdown_accuracy,
    countdown_equation,
    evaluate_expression,
)

LABEL = json.dumps({"nums": [3, 5, 7], "target": 22})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("3 * 5 + 7", 1.0),
        ("(7 + 5 * 3)", 1.0),
        ("3 \\times 5 + 7 = 22", 1.0),
        ("\\boxed{3 × 5 + 7}", 1.0),
        ("7 + 3 * 5 + 0", 0.0),  # 0 is not a given number
        ("3 * 5 + 7 + 7", 0.0),  # 7 used twice
        ("3 * 5", 0.0),  # 7 unused
        ("3 * 5 + 8", 0.0),
        ("3 ** 5 + 7", 0.0),
        ("__import__('os').system('true')", 0.0),
        ("3*5+7.0", 0.0),
        ("", 0.0),
    ],
)
def test_countdown(answer, expected):
    response = f"<think>try</think><answer>{answer}</answer>"
    assert countdown_accuracy(response, LABEL).value == expected


def test_division_is_exact():
    label = json.dumps({"nums": [1, 3, 4, 6], "target": 24})
    assert countdown_accuracy("<answer>6 / (1 - 3 / 4)</answer>", label).value == 1.0
    assert evaluate_expression("1 / 3")[0] == Fraction(1, 3)


@pytest.mark.parametrize(
    "expression",
    ["9**9**9**9", "10**10**10", "(" * 5000 + "1" + ")" * 5000, "1+" * 100 + "1", "1/0", "a+1"],
)
def test_evaluator_refuses_without_computing(expression):
    with pytest.raises(ExpressionError):
        evaluate_expression(expression)


def test_bad_label_and_no_answer():
    assert countdown_accuracy("<answer>1+2</answer>", "not json").reason == "bad label"
    assert countdown_accuracy("1+2", LABEL).reason == "no answer"


def test_equation_spellings():
    assert countdown_equation("\\left(3+5\\right) \\div 2 = 4") == "(3+5) / 2"
