"""R1 format scorers, strict and lenient."""

import pytest

from mindspeed_rl.rewards.format import r1_format_lenient, r1_format_strict


@pytest.mark.parametrize(
    ("response", "strict", "lenient"),
    [
        ("<think>reason</think><answer>5</answer>", 1.0, 1.0),
        ("  <think>reason</think>\n<answer> 5 </answer>\n", 1.0, 1.0),
        ("reason</think><answer>5</answer>", 0.0, 1.0),  # <think> came from the prompt
        ("<think>a</think> so <answer>5</answer>", 0.0, 1.0),
        ("<think>a</think><answer>5</answer> done", 0.0, 1.0),
        ("<answer>5</answer><think>a</think>", 0.0, 0.0),
        ("<think>a</think><answer>5</answer><answer>6</answer>", 0.0, 0.0),
        ("<think>a<think>b</think><answer>5</answer>", 0.0, 0.0),
        ("<think>a</think><answer> </answer>", 0.0, 0.0),
        ("<think>a</think><answer>5", 0.0, 0.0),
        ("<think><answer>5</think>", 0.0, 0.0),
        ("\\boxed{5}", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_format(response, strict, lenient):
    assert r1_format_strict(response, "5").value == strict
    assert r1_format_lenient(response, "5").value == lenient


def test_reason_is_given():
    assert "exactly once" in r1_format_strict("<think>x</think>", "").reason
