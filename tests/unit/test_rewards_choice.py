"""The multiple-choice scorer and GPQA-style preprocessing (option shuffling)."""

from __future__ import annotations

import pytest

from mindspeed_rl.data.handlers import OPTION_LETTERS, RowView, gpqa, shuffled_options
from mindspeed_rl.rewards.choice import choice_accuracy


def _tags(answer: str) -> str:
    return f"<think>comparing the options</think> <answer>{answer}</answer>"


@pytest.mark.parametrize(
    "response",
    [
        _tags("C"), _tags("(C)"), _tags("C)"), _tags("C."), _tags("\\boxed{C}"),
        _tags("\\text{(C)}"), _tags("(C) 42 meters"), _tags("C) 42"), _tags("The final answer is C"),
        _tags("Answer: (C)"), _tags("option C"), "so the answer is $\\boxed{C}$",
        "Reasoning... Therefore the answer is (C).", _tags("$C$"),
    ],
)  # fmt: skip
def test_the_right_letter_is_credited(response):
    assert choice_accuracy(response, "C").value == 1.0


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (_tags("A or C"), "several options"),
        (_tags("(A) and (C)"), "several options"),
        (_tags("B"), "wrong answer"),
        (_tags("the answer is a number"), "no option letter"),
        (_tags("42 meters"), "no option letter"),
        ("I think it is C", "no answer"),
        ("", "no answer"),
    ],
)
def test_wrong_several_or_no_letters_are_not(response, reason):
    score = choice_accuracy(response, "C")
    assert (score.value, score.reason) == (0.0, reason)


def test_the_label_may_be_written_with_parentheses():
    assert choice_accuracy(_tags("D"), "(D)").value == 1.0


def test_shuffling_is_fixed_by_the_question_and_the_gold_letter_follows_the_correct_answer():
    incorrect = ["wrong 1", "wrong 2", "wrong 3"]
    seen = set()
    for k in range(40):
        question = f"Question number {k}?"
        options, letter = shuffled_options(question, "right", incorrect)
        assert options[OPTION_LETTERS.index(letter)] == "right"
        assert sorted(options) == sorted(["right", *incorrect])
        assert shuffled_options(question, "right", incorrect) == (options, letter)  # same seed
        seen.add(letter)
    assert seen == set("ABCD")  # the correct option is not always in one place


def test_gpqa_rows_become_lettered_questions():
    row = {"Question": "Which is a noble gas?", "Correct Answer": "Argon",
           "Incorrect Answer 1": "Oxygen", "Incorrect Answer 2": "Iron",
           "Incorrect Answer 3": "Sodium"}  # fmt: skip
    example = gpqa(RowView(row, {}))
    lines = example.question.splitlines()
    assert lines[0] == "Which is a noble gas?"
    assert f"{example.label}) Argon" in lines
    assert [line[:2] for line in lines[2:6]] == ["A)", "B)", "C)", "D)"]
    assert lines[-1] == "Answer with the letter of the correct option."
    assert choice_accuracy(_tags(example.label), example.label).value == 1.0
