"""The scorer contract: a pure function of (response text, ground-truth label) to a Score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """What one scorer says about one response."""

    value: float
    """The score, 0.0 (wrong) to 1.0 (right)."""
    reason: str = ""
    """Why the score is not full marks (``"no answer"``, ``"wrong answer"``, ``"timeout"``)."""


Scorer = Callable[[str, str], Score]
"""``scorer(response, label) -> Score``. Must never raise on model output."""

WRONG = "wrong answer"
NO_ANSWER = "no answer"


@dataclass(frozen=True)
class RewardResult:
    """The reward of one response, with the parts it is made of."""

    total: float
    """Weighted sum of the parts."""
    parts: dict[str, float]
    """Scorer name -> its score (unweighted), for logging."""
    reasons: dict[str, str]
    """Scorer name -> why it did not give full marks ("" when it did)."""
