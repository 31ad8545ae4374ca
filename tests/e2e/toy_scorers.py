"""Scorers for end-to-end tests with random tiny models, which never solve a math problem.

They give graded, deterministic rewards on any text, so advantages are non-zero and the
policy actually moves.
"""

from __future__ import annotations

from mindspeed_rl.rewards.base import Score


def vowel_ratio(response: str, label: str) -> Score:
    """Fraction of the response's letters that are vowels."""
    letters = [c for c in response.lower() if c.isalpha()]
    if not letters:
        return Score(0.0, "no letters")
    return Score(sum(c in "aeiou" for c in letters) / len(letters))


def not_a_number(response: str, label: str) -> float:
    """A broken custom scorer: the run must stop with one line naming it."""
    return float("nan")
