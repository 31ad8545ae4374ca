"""GSM8K scorer: the number after #### against the final answer, commas and units ignored."""

import pytest

from mindspeed_rl.rewards.gsm8k import gsm8k_accuracy


@pytest.mark.parametrize(
    ("response", "label", "expected"),
    [
        ("<think>..</think><answer>18</answer>", "18", 1.0),
        ("<answer>$18</answer>", "18", 1.0),
        ("<answer>18 dollars</answer>", "18", 1.0),
        ("<answer>\\boxed{18}</answer>", "18", 1.0),
        ("<answer>1,200</answer>", "1200", 1.0),
        ("<answer>1200</answer>", "Janet ... #### 1,200", 1.0),
        ("<answer>18.00</answer>", "18", 1.0),
        ("<answer>-4</answer>", "-4", 1.0),
        ("so #### 18", "18", 1.0),
        ("The answer is \\boxed{18}.", "18", 1.0),
        ("<answer>19</answer>", "18", 0.0),
        ("<answer>1,201</answer>", "1200", 0.0),
        ("<answer>eighteen</answer>", "18", 0.0),
        ("I think 18", "18", 0.0),
        ("<answer>18</answer>", "not a number", 0.0),
    ],
)
def test_gsm8k(response, label, expected):
    assert gsm8k_accuracy(response, label).value == expected
