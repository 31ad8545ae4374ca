"""Evaluation metrics the way R1-Zero reports are made: pass@1, avg@k, pass@k, maj@k.

Everything here is a pure function of per-prompt lists of per-sample results, so the
``cli/eval.py`` command and the trainer's periodic validation compute the same numbers:

    greedy_metrics([[True], [False]])                              # {"pass@1": 0.5, ...}
    sampled_metrics(correct=[[1, 0, 1], [0, 0, 0]], answers=[["5", "6", "5"], [...]], k=3)

A sample is correct when its score is >= 0.5: the accuracy scorers give 0 or 1, and a
boolean works as it is. Prompts may have different numbers of samples; ``k`` must not exceed
the smallest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CORRECT_AT = 0.5
"""A sample whose accuracy score is at least this counts as correct."""


def _is_correct(value: float | bool) -> bool:
    return float(value) >= CORRECT_AT


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct.

    pass@k = 1 - C(n - c, k) / C(n, k) (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code"): the chance that k samples drawn without replacement from the n include
    a correct one. The binomials overflow floats for large n, so the ratio is computed as the
    product prod_{i = n-c+1}^{n} (1 - k / i), which stays in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"k={k} is more than the n={n} samples; sample at least k per prompt")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} correct samples is not between 0 and n={n}")
    if n - c < k:
        # Every draw of k samples contains a correct one.
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_answer(answers: Sequence[str | None]) -> int | None:
    """Index of the sample whose answer wins the vote, or None when no sample has an answer.

    Samples without an answer (None or empty) do not vote. Answers are compared as given
    (callers pass a normalised key when spellings should count as one answer). Ties go to the
    answer whose first occurrence comes earliest in sample order, so the result depends only
    on the inputs; the returned index is that first occurrence.
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if not answer:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, i)
    if not counts:
        return None
    # max over (count, -first index): the most votes, then the earliest first occurrence.
    winner = max(counts, key=lambda a: (counts[a], -first[a]))
    return first[winner]


def _check_k(groups: Sequence[Sequence[object]], k: int, what: str) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if not groups:
        raise ValueError(f"no prompts to compute {what} over")
    smallest = min(len(g) for g in groups)
    if k > smallest:
        where = min(range(len(groups)), key=lambda i: len(groups[i]))
        raise ValueError(
            f"k={k} is more than the n={smallest} samples of prompt {where}; "
            f"sample n >= k per prompt or lower k"
        )


def avg_at_k(correct: Sequence[Sequence[float | bool]], k: int) -> float:
    """Mean accuracy over the first ``k`` samples of each prompt, averaged over prompts."""
    _check_k(correct, k, "avg@k")
    return sum(sum(_is_correct(v) for v in g[:k]) / k for g in correct) / len(correct)


def mean_pass_at_k(correct: Sequence[Sequence[float | bool]], k: int) -> float:
    """The unbiased pass@k of each prompt (from all its samples), averaged over prompts."""
    _check_k(correct, k, "pass@k")
    return sum(pass_at_k(len(g), sum(map(_is_correct, g)), k) for g in correct) / len(correct)


def maj_at_k(
    correct: Sequence[Sequence[float | bool]], answers: Sequence[Sequence[str | None]], k: int
) -> float:
    """Fraction of prompts whose majority answer over the first ``k`` samples is correct.

    The vote is :func:`majority_answer` (no-answer samples abstain; ties go to the answer seen
    first); the winner's correctness is that of its first sample. A prompt where no sample
    answered counts as wrong.
    """
    _check_k(correct, k, "maj@k")
    if len(answers) != len(correct) or any(len(a) != len(c) for a, c in zip(answers, correct)):
        raise ValueError("answers must have the same shape as correct (one per sample)")
    right = 0
    for group_correct, group_answers in zip(correct, answers):
        winner = majority_answer(group_answers[:k])
        right += winner is not None and _is_correct(group_correct[winner])
    return right / len(correct)


def _mean(values: Sequence[Sequence[float | bool | int]]) -> float:
    flat = [float(v) for g in values for v in g]
    if not flat:
        raise ValueError("no samples to average")
    return sum(flat) / len(flat)


def format_rate(formatted: Sequence[Sequence[float | bool]]) -> float:
    """Fraction of all samples whose format score is >= 0.5."""
    return _mean([[_is_correct(v) for v in g] for g in formatted])


def mean_length(lengths: Sequence[Sequence[int]]) -> float:
    """Mean response length (tokens) over all samples."""
    return _mean(lengths)


def greedy_metrics(
    correct: Sequence[Sequence[float | bool]],
    formatted: Sequence[Sequence[float | bool]] | None = None,
    lengths: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """``pass@1`` of one greedy sample per prompt, with ``format_rate`` / ``mean_length`` when
    given. Each argument holds one list per prompt (of one sample)."""
    _check_k(correct, 1, "pass@1")
    out = {"pass@1": avg_at_k(correct, 1)}
    return out | _extras(formatted, lengths)


def sampled_metrics(
    correct: Sequence[Sequence[float | bool]],
    k: int | None = None,
    answers: Sequence[Sequence[str | None]] | None = None,
    formatted: Sequence[Sequence[float | bool]] | None = None,
    lengths: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """``avg@k``, ``pass@k`` and (with ``answers``) ``maj@k`` of sampled responses, plus
    ``format_rate`` / ``mean_length`` when given. ``k`` defaults to the smallest number of
    samples of a prompt; a ``k`` above it raises ValueError naming both."""
    if k is None:
        k = min((len(g) for g in correct), default=0)
    _check_k(correct, k, "sampled metrics")
    out = {f"avg@{k}": avg_at_k(correct, k), f"pass@{k}": mean_pass_at_k(correct, k)}
    if answers is not None:
        out[f"maj@{k}"] = maj_at_k(correct, answers, k)
    return out | _extras(formatted, lengths)


def _extras(
    formatted: Sequence[Sequence[float | bool]] | None, lengths: Sequence[Sequence[int]] | None
) -> dict[str, float]:
    out = {}
    if formatted is not None:
        out["format_rate"] = format_rate(formatted)
    if lengths is not None:
        out["mean_length"] = mean_length(lengths)
    return out
