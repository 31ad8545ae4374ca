"""Math answer accuracy: the response's final answer against the ground truth.

Symbolic equivalence comes from Hugging Face's ``math-verify``. What it misses on R1-style output
is handled here: it only looks for LaTeX inside ``$...$``, ``\\[...\\]`` or ``\\boxed{}``, so an
answer written bare inside ``<answer>`` tags (``<answer>\\left( 3, \\frac{\\pi}{2} \\right)</answer>``)
is read as the first number it can find (``3``). The answer is therefore cut out here first
(see :func:`~mindspeed_rl.rewards.extract.extract_answer`) and handed over inside ``\\boxed{}``.

math-verify's own timeouts use ``signal.alarm``, which only works on a process's main thread (not
in a Ray actor's worker thread); they are switched off here and the process pool that runs the
scorers enforces the time limit instead.
"""

from __future__ import annotations

import functools
import re

from math_verify import parse, verify

from mindspeed_rl.rewards.base import NO_ANSWER, WRONG, Score
from mindspeed_rl.rewards.extract import extract_answer, plain_number

# Competition answers are short. Anything longer is prose or an attack on the parser, and is
# not worth a trip through it.
MAX_ANSWER_CHARS = 400

_DELIMITERS = ("$", "\\(", "\\)", "\\[", "\\]")
_NO_MEANING = (
    "\\displaystyle",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\%",
    "%",
    "^{\\circ}",
    "^\\circ",
    "°",
    "{,}",
)
_FRAC_RE = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_SIZING_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![a-zA-Z])")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_MATH_SPAN_RE = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.DOTALL)
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_LETTERS_RE = re.compile(r"[A-Za-z ()]+")
_VARIABLE_IS_RE = re.compile(r"^[A-Za-z]\s*=\s*")
# One-token arguments that LaTeX allows without braces: \frac12, \sqrt 3.
_BARE_FRAC_RE = re.compile(r"\\frac\s*(\w)\s*(\w)")
_BARE_SQRT_RE = re.compile(r"\\sqrt\s*(\w)")
_ENVIRONMENT_RE = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}")
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
# "\text{181 dollars}" and "181 dollars": a number with its unit in words.
_TEXT_WITH_UNIT_RE = re.compile(
    r"\\(?:text|textbf|mbox|mathrm)\{\s*(" + _NUMBER + r")\s*([^{}]*)\}"
)
_NUMBER_WORDS_RE = re.compile(r"(" + _NUMBER + r")\s*([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*(?:\^[23])?)")
# Words that are mathematics, not units: "5 pi" is not "5".
_NOT_UNITS = {"pi", "sqrt", "sin", "cos", "tan", "log", "ln", "exp", "and", "or", "times", "cdot"}
# One inequality in one variable ("x \le 3", "-2 < x \leq 5"): the interval it describes.
_LESS = {"<": False, "\\lt": False, "\\le": True, "\\leq": True, "\\leqslant": True, "≤": True}
_GREATER = {">": False, "\\gt": False, "\\ge": True, "\\geq": True, "\\geqslant": True, "≥": True}
_RELATION = r"(<|>|≤|≥|\\l(?:eq?(?:slant)?|t)(?![a-zA-Z])|\\g(?:eq?(?:slant)?|t)(?![a-zA-Z]))"
_ONE_SIDED_RE = re.compile(r"([A-Za-z])\s*" + _RELATION + r"\s*([^<>≤≥=]+)")
_TWO_SIDED_RE = re.compile(
    r"([^<>≤≥=]+?)\s*" + _RELATION + r"\s*([A-Za-z])\s*" + _RELATION + r"\s*([^<>≤≥=]+)"
)


def normalize_latex(text: str) -> str:
    """Drop what does not change a final answer's value: delimiters, sizing, units of %, degrees."""
    # "\$" is a currency sign, "$" a math delimiter: neither changes the value.
    text = text.strip().replace("\\$", "")
    for token in _DELIMITERS:
        text = text.replace(token, "")
    for token in _NO_MEANING:
        text = text.replace(token, "")
    text = _SIZING_RE.sub("", _FRAC_RE.sub(r"\\frac", text))
    # Brackets of a column vector are notation: sympy builds the same matrix from both.
    text = text.replace("{bmatrix}", "{pmatrix}")
    return text.strip().rstrip(".").strip()


def _number_with_unit(text: str) -> str | None:
    """The number of an answer that is a number and a unit in words (``\\text{181 dollars}``,
    ``22 square units``), else None."""
    match = _TEXT_WITH_UNIT_RE.fullmatch(text) or _NUMBER_WORDS_RE.fullmatch(text)
    if match is None:
        return None
    words = set(re.findall(r"[A-Za-z]+", match.group(2)))
    return None if words & _NOT_UNITS else match.group(1)


def _interval_of_inequality(text: str) -> str | None:
    """``x \\le 3`` -> ``(-\\infty, 3]``, ``-2 < x \\leq 5`` -> ``(-2, 5]``; None if ``text``
    is not one inequality in one variable."""
    two = _TWO_SIDED_RE.fullmatch(text)
    if two is not None:
        low, rel1, _, rel2, high = two.groups()
        if rel1 in _LESS and rel2 in _LESS:
            return f"{'[' if _LESS[rel1] else '('}{low.strip()}, {high.strip()}{']' if _LESS[rel2] else ')'}"
        return None
    one = _ONE_SIDED_RE.fullmatch(text)
    if one is None:
        return None
    _, rel, bound = one.groups()
    bound = bound.strip()
    if re.search(_RELATION, bound):
        return None
    if rel in _LESS:
        return f"(-\\infty, {bound}{']' if _LESS[rel] else ')'}"
    return f"{'[' if _GREATER[rel] else '('}{bound}, \\infty)"


def _is_interval(text: str) -> bool:
    """Whether ``text`` is written as an interval (or a union of them): ``[a, b)``."""
    return text[:1] in "[(" and text[-1:] in "])" and "," in text


def _compact(text: str) -> str:
    """A spacing-insensitive key with ``\\text{}`` unwrapped and bare arguments braced."""
    text = _BARE_SQRT_RE.sub(r"\\sqrt{\1}", _BARE_FRAC_RE.sub(r"\\frac{\1}{\2}", text))
    return re.sub(r"\s+", "", _TEXT_RE.sub(r"\1", text))


def _is_prose(text: str) -> bool:
    """Whether an answer is a sentence (two or more words outside math and LaTeX commands)."""
    bare = _MATH_SPAN_RE.sub(" ", text)
    bare = _COMMAND_RE.sub(" ", _TEXT_RE.sub(" ", _ENVIRONMENT_RE.sub(" ", bare)))
    return len(_WORD_RE.findall(bare)) >= 2


def _words(text: str) -> str | None:
    """An answer made only of letters (``\\text{Evelyn}``, ``(C)``) as a lower-case key."""
    unwrapped = _TEXT_RE.sub(r"\1", text)
    if not _LETTERS_RE.fullmatch(unwrapped):
        return None
    return re.sub(r"[\s()]", "", unwrapped).lower()


def _is_text_answer(label: str) -> bool:
    """Whether a label is words or a choice (``\\text{Evelyn}``, ``(C)``), not a variable."""
    return _words(label) is not None and (
        "\\text" in label or "(" in label or _WORD_RE.search(label) is not None
    )


@functools.lru_cache(maxsize=4096)
def _parse_gold(label: str) -> tuple:
    # GRPO scores G responses per prompt against the same label: parse it once.
    return tuple(parse("\\boxed{" + label + "}", parsing_timeout=None))


def _parse_prediction(answer: str, normalized: str) -> list:
    if _is_prose(answer):
        # A sentence ("the answer is $5$"): math-verify's own anchors and delimiters apply.
        return parse(answer, parsing_timeout=None)
    return parse("\\boxed{" + normalized + "}", parsing_timeout=None)


# The G responses to one prompt often agree: judging each distinct (answer, label) once pays
# for math-verify's parser (tens of ms for a tuple or an interval) once.
@functools.lru_cache(maxsize=16384)
def judge_equivalent(answer: str, label: str) -> bool:
    """Whether the extracted ``answer`` means the same as the ground-truth ``label``."""
    pred, gold = normalize_latex(answer), normalize_latex(label)
    if "=" not in gold:
        # "x = 5" answers "5"; math-verify agrees, this only saves it the trip.
        pred = _VARIABLE_IS_RE.sub("", pred)
    if _compact(pred) == _compact(gold):
        return True
    if _is_interval(gold):
        # math-verify keeps "x \le 3" a relation, never equal to the interval (-oo, 3].
        pred = _interval_of_inequality(pred) or pred
    pred_number, gold_number = plain_number(pred), plain_number(gold)
    if gold_number is not None and pred_number is None:
        with_unit = _number_with_unit(pred)
        pred_number = plain_number(with_unit) if with_unit is not None else None
    if pred_number is not None and gold_number is not None:
        return pred_number == gold_number
    if _is_text_answer(gold):
        # math-verify reads words as products of symbols, so "Evelyn" would equal any anagram.
        return _words(pred) == _words(gold)
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return False
    return verify(list(gold_parsed), _parse_prediction(answer, pred), timeout_seconds=None)


def math_accuracy(response: str, label: str) -> Score:
    """1.0 if the response's final answer is equivalent to ``label``, else 0.0 with the reason."""
    try:
        answer = extract_answer(response)
        if answer is None:
            return Score(0.0, NO_ANSWER)
        if not answer:
            return Score(0.0, "empty answer")
        if len(answer) > MAX_ANSWER_CHARS:
            return Score(0.0, "answer too long")
        return Score(1.0) if judge_equivalent(answer, label) else Score(0.0, WRONG)
    except Exception as err:  # a scorer never raises on model output
        return Score(0.0, f"error: {type(err).__name__}")
