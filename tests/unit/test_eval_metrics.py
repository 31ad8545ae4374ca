"""Eval metrics against hand-computed values (the arithmetic is in the comments)."""

import math

import pytest

from mindspeed_rl.eval.metrics import (
    avg_at_k,
    format_rate,
    greedy_metrics,
    maj_at_k,
    majority_answer,
    mean_length,
    mean_pass_at_k,
    pass_at_k,
    sampled_metrics,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 2, 0.7),
        # k = 1 is the plain fraction correct: 1/4
        (4, 1, 1, 0.25),
        # no correct sample: 0 whatever k
        (4, 0, 3, 0.0),
        # n - c = 1 < k = 2: every pair holds a correct sample
        (4, 3, 2, 1.0),
        # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12
        (10, 3, 5, 11 / 12),
        # k = n: right when any sample is
        (8, 1, 8, 1.0),
        # 1 - C(15,4)/C(16,4) = 1 - 1365/1820 = 1/4 (= k/n when c = 1)
        (16, 1, 4, 0.25),
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    # C(1000, 500) ~ 2.7e299 and C(4000, 2000) overflows a float; the product form does not.
    # c = 1: 1 - C(n-1,k)/C(n,k) = 1 - (n-k)/n = k/n.
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5, abs=1e-12)
    assert pass_at_k(4000, 1, 2000) == pytest.approx(0.5, abs=1e-12)
    # Against exact integer arithmetic on a case with many correct samples.
    n, c, k = 300, 17, 40
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


def test_k_above_n_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"k=9 .* n=8"):
        pass_at_k(8, 3, 9)
    groups = [[1, 0, 1, 1], [0, 1]]
    for fn in (avg_at_k, mean_pass_at_k):
        with pytest.raises(ValueError, match=r"k=3 is more than the n=2 samples of prompt 1"):
            fn(groups, 3)
    with pytest.raises(ValueError, match=r"k=5 .* n=2"):
        sampled_metrics(groups, k=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k(4, 1, 0)


def test_avg_at_k_uses_the_first_k_samples():
    correct = [[1, 0, 1, 1], [0, 0, 1, 0]]
    # k=4: (3/4 + 1/4) / 2 = 0.5 ; k=2: (1/2 + 0/2) / 2 = 0.25
    assert avg_at_k(correct, 4) == pytest.approx(0.5)
    assert avg_at_k(correct, 2) == pytest.approx(0.25)
    # Booleans and 0/1 scores are the same thing; 0.5 counts as correct, 0.4 not.
    assert avg_at_k([[True, False]], 2) == 0.5
    assert avg_at_k([[0.5, 0.4]], 2) == 0.5


def test_mean_pass_at_k_averages_prompts():
    # prompt 0: n=4, c=2, k=2 -> 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6
    # prompt 1: n=4, c=0 -> 0 ; mean = 5/12
    assert mean_pass_at_k([[1, 0, 1, 0], [0, 0, 0, 0]], 2) == pytest.approx(5 / 12)


def test_majority_vote_and_its_tie_break():
    # 2 votes "5" (first at 0) vs 2 votes "6" (first at 1): the earlier first occurrence wins.
    assert majority_answer(["5", "6", "6", "5"]) == 0
    assert majority_answer(["6", "5", "5", "6"]) == 0
    # Plain majority beats order; no-answer samples abstain.
    assert majority_answer([None, "7", "", "7", "3"]) == 1
    assert majority_answer([None, ""]) is None


def test_maj_at_k_hand_values():
    correct = [[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    answers = [
        ["5", "6", "6", "5"],  # tie 5/6 -> "5" (seen first) -> right
        [None, "7", "7", "3"],  # "7" x2 -> right
        [None, None, None, None],  # nobody answered -> wrong
        ["2", "9", "9", "1"],  # "9" x2 beats the right "2" -> wrong
    ]
    # 2 of 4 prompts
    assert maj_at_k(correct, answers, 4) == pytest.approx(0.5)
    # k=1: the first sample's answer alone: right, wrong (abstained), wrong, right -> 2/4
    assert maj_at_k(correct, answers, 1) == pytest.approx(0.5)
    # k=3: ["5","6","6"] -> "6" wrong; ["7","7"] right; none; ["2","9","9"] wrong -> 1/4
    assert maj_at_k(correct, answers, 3) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        maj_at_k(correct, answers[:3], 2)


def test_format_rate_and_mean_length():
    # 3 formatted of 5 samples; lengths (10 + 20 + 30 + 40 + 50) / 5 = 30
    assert format_rate([[1, 0, 1], [1, 0]]) == pytest.approx(0.6)
    assert mean_length([[10, 20, 30], [40, 50]]) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="no samples"):
        mean_length([[]])


def test_greedy_and_sampled_dicts():
    greedy = greedy_metrics([[1], [0], [1], [1]], formatted=[[1], [1], [0], [1]],
                            lengths=[[4], [6], [8], [10]])  # fmt: skip
    # pass@1 = 3/4, format 3/4, length 28/4 = 7
    assert greedy == {"pass@1": 0.75, "format_rate": 0.75, "mean_length": 7.0}
    sampled = sampled_metrics(
        [[1, 0, 1, 0], [0, 0, 0, 0]],
        answers=[["3", "4", "3", "4"], ["1", "1", "2", None]],
    )
    # k defaults to n=4: avg (2/4 + 0) / 2 = 0.25; pass@4 (1 + 0) / 2 = 0.5;
    # maj: tie 3/4 -> "3" right; "1" wrong -> 0.5
    assert sampled == {"avg@4": 0.25, "pass@4": 0.5, "maj@4": 0.5}
    with pytest.raises(ValueError, match="greater|more than"):
        greedy_metrics([[1], []])


def test_vote_keys_merge_spellings_of_one_number():
    from mindspeed_rl.eval.run import vote_key

    def key(answer: str, scorer: str = "math") -> str | None:
        return vote_key(f"<think>w</think> <answer>{answer}</answer>", scorer)

    assert key("1,000") == key("1000.0") == key("$1000$") == "1000"
    assert key("\\dfrac{1}{2}") == key("\\frac{1}{2}") != key("\\frac{1}{3}")
    assert key("(1, 2)") == key("\\left( 1,2 \\right)")
    assert key("$18", "gsm8k") == key("18 dollars", "gsm8k") == "18"
    assert vote_key("no tags at all", "math") is None
    assert key(" ") is None
