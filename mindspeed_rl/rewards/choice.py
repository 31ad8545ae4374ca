"""Multiple-choice accuracy (GPQA-style): the option letter a response picks against the gold one.

The answer is read where the math scorer reads it (the last ``<answer>`` block, a ``\\boxed{}``
in it or in the response, a lead-in such as "The final answer is" dropped); without either, the
response's last "the answer is (C)". A letter counts when it stands alone: ``C``, ``(C)``,
``C)``, ``C.``, ``\\text{(C)}``, ``(C) 42``, "option C". An answer that names several different
letters ("A or C") is refused: picking two is not picking the right one.
"""

from __future__ import annotations

import re

from mindspeed_rl.rewards.base import NO_ANSWER, WRONG, Score
from mindspeed_rl.rewards.extract import extract_answer

LETTERS = "ABCDEFGHIJ"
"""Option letters a question may use (GPQA uses A-D)."""

_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}")
_ALONE = rf"\(?([{LETTERS}])\)?[.:)]?"
_WHOLE_RE = re.compile(rf"\s*{_ALONE}\s*")
# "A or C", "A, C", "(A) and (C)": letters and nothing else.
_LIST_RE = re.compile(rf"\s*{_ALONE}(?:\s*(?:,|/|&|\bor\b|\band\b)\s*{_ALONE})+\s*")
_LETTER_RE = re.compile(rf"(?<![A-Za-z])([{LETTERS}])(?![A-Za-z])")
# "(C) 42", "C) 42", "C. 42": the option's letter, then its text.
_LEADING_RE = re.compile(rf"\s*\(?([{LETTERS}])[).:]\s")
# Markers that name an option inside a longer answer.
_MARKER_RE = re.compile(rf"\(([{LETTERS}])\)|\b(?i:option|choice)\s+\(?([{LETTERS}])\b\)?")
_ANSWER_IS_RE = re.compile(rf"(?i:answer\s+is)\s*:?\s*\(?([{LETTERS}])\b\)?")
_MAX_ANSWER_CHARS = 2000


def choice_letter(answer: str) -> str | None | tuple[str, ...]:
    """The letter ``answer`` picks; None when it picks none; the sorted letters when it
    names several."""
    text = _TEXT_RE.sub(r"\1", answer).replace("$", "").strip()
    whole = _WHOLE_RE.fullmatch(text)
    if whole:
        return whole.group(1)
    if _LIST_RE.fullmatch(text):
        letters = set(_LETTER_RE.findall(text))
        return letters.pop() if len(letters) == 1 else tuple(sorted(letters))
    leading = _LEADING_RE.match(text)
    marked = {m.group(1) or m.group(2) for m in _MARKER_RE.finditer(text)}
    if leading:
        marked.add(leading.group(1))
    if not marked:
        return None
    return marked.pop() if len(marked) == 1 else tuple(sorted(marked))


def _last_answer_is(response: str) -> str | None:
    found = _ANSWER_IS_RE.findall(response)
    return found[-1] if found else None


def choice_accuracy(response: str, label: str) -> Score:
    """1.0 when the response picks the option ``label`` names (``C`` or ``(C)``), else 0.0."""
    try:
        gold = choice_letter(label)
        if not isinstance(gold, str):
            return Score(0.0, "error: label is not one option letter")
        answer = extract_answer(response)
        if answer is None:
            picked = _last_answer_is(response[-_MAX_ANSWER_CHARS:])
        elif len(answer) > _MAX_ANSWER_CHARS:
            return Score(0.0, "answer too long")
        else:
            picked = choice_letter(answer)
        if picked is None:
            return Score(0.0, NO_ANSWER if answer is None else "no option letter")
        if isinstance(picked, tuple):
            return Score(0.0, "several options")
        return Score(1.0) if picked == gold else Score(0.0, WRONG)
    except Exception as err:  # a scorer never raises on model output
        return Score(0.0, f"error: {type(err).__name__}")
