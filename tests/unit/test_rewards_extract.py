"""Answer extraction: boxes, answer tags, numbers; linear on hostile input."""

from fractions import Fraction

import pytest

from mindspeed_rl.rewards.extract import (
    answer_tag_content,
    braced_content,
    extract_answer,
    last_boxed,
    last_number,
    plain_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed 7 apples", "7"),
        ("\\fbox{9}", "9"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("no box here", None),
        ("\\boxed{5} and a broken \\boxed{", "5"),
        ("\\boxed{" * 10_000, None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_braced_content_balanced_and_not():
    assert braced_content("{a{b}c}", 0) == "a{b}c"
    assert braced_content("{a{b}c", 0) is None
    assert braced_content("x", 0) is None


def test_answer_tag_takes_last_complete_pair():
    assert answer_tag_content("<answer>1</answer> <answer>2</answer>") == "2"
    assert answer_tag_content("<answer>1</answer> <answer>2") == "1"
    assert answer_tag_content("<answer>1") is None
    assert answer_tag_content("<think><answer>5</think></answer>") is None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<think>\\boxed{1}</think><answer>2</answer>", "2"),
        ("<answer>the answer is \\boxed{3}</answer>", "3"),
        ("<answer>  x = 5 </answer>", "x = 5"),
        ("final: \\boxed{4}", "4"),
        ("<answer>", None),
        ("nothing", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_numbers():
    assert plain_number("1,200") == 1200
    assert plain_number("-3.50") == Fraction(-7, 2)
    assert plain_number("5.") == 5
    assert plain_number("1,2") is None
    assert plain_number("x") is None
    assert last_number("I paid $1,200.50 for 3 items, so 18 dollars") == 18
    assert last_number("$1,200.50") == Fraction(240100, 200)
    assert last_number("none") is None


def test_lead_ins_are_stripped_inside_answer_tags_only():
    from mindspeed_rl.rewards.extract import strip_lead_in

    assert extract_answer("<answer>The final answer is \\sqrt{51}</answer>") == "\\sqrt{51}"
    assert extract_answer("<answer>Answer: 7</answer>") == "7"
    assert extract_answer("<answer>So the result = 3</answer>") == "3"
    assert strip_lead_in("The answer is") == "The answer is"  # nothing after it: kept
    assert strip_lead_in("x = 5") == "x = 5"  # a variable, not a lead-in
    assert strip_lead_in("answers vary") == "answers vary"
