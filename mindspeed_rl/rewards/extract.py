"""Answer extraction shared by the scorers (and the MATH dataset handler).

Everything here is linear in the input length: scorers see arbitrary model output, including
megabyte-long responses and thousands of nested braces.
"""

from __future__ import annotations

import re
from fractions import Fraction

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
_THINK_TAGS = ("<think>", "</think>")
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# A truncated response often ends in a broken \boxed{; look a few boxes further back, no more,
# so a response made of thousands of broken boxes stays linear.
_MAX_BOX_TRIES = 4

# "The final answer is", "Answer:", "So the answer is:", "Therefore, the result =": a lead-in
# before the answer inside the tags. It must end in "is", ":" or "=", so a bare "answer" stays.
_LEAD_IN_RE = re.compile(
    r"(?:(?:so|thus|therefore|hence)\b[\s,]*)?(?:the\s+)?(?:final\s+)?"
    r"(?:answer|result|solution)\s*(?::|\bis\b\s*:?|=)\s*",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+")


def braced_content(text: str, start: int) -> str | None:
    """The text inside the ``{...}`` group opening at ``text[start]``, or None if unbalanced.

    Escaped braces (``\\{``, ``\\}``) are literal characters, not group delimiters.
    """
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _box_argument(text: str, after: int) -> str | None:
    """The argument of a box command whose name ends at ``after``: ``{...}`` or one token."""
    i = after
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        return braced_content(text, i)
    # ``\boxed 5`` is valid LaTeX: the argument is the next token.
    match = re.match(r"[^\s$]+", text[i : i + 64]) if i > after else None
    return match.group(0) if match else None


def last_boxed(text: str) -> str | None:
    """The content of the last well-formed ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``."""
    end = len(text)
    for _ in range(_MAX_BOX_TRIES):
        pos, name = max((text.rfind(cmd, 0, end), cmd) for cmd in _BOX_COMMANDS)
        if pos == -1:
            return None
        content = _box_argument(text, pos + len(name))
        if content is not None:
            return content
        end = pos
    return None


def answer_tag_content(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>`` pair, or None.

    A pair that straddles a think tag (``<answer>5</think></answer>``) is tangled tags, not an
    answer.
    """
    close = text.rfind(ANSWER_CLOSE)
    if close == -1:
        return None
    open_ = text.rfind(ANSWER_OPEN, 0, close)
    if open_ == -1:
        return None
    content = text[open_ + len(ANSWER_OPEN) : close]
    if any(tag in content for tag in _THINK_TAGS):
        return None
    return content


def strip_lead_in(answer: str) -> str:
    """``answer`` without a leading "The final answer is" / "Answer:" (kept when nothing
    follows the lead-in)."""
    match = _LEAD_IN_RE.match(answer)
    if match is None or match.end() == len(answer):
        return answer
    return answer[match.end() :].strip()


def extract_answer(response: str) -> str | None:
    """The final answer of an R1-style response, or None when it gives none.

    The last ``<answer>`` block wins; inside it a ``\\boxed{}`` narrows the answer down, else
    the block without a lead-in ("The final answer is ..."). Without answer tags, the last
    ``\\boxed{}`` of the response is the answer.
    """
    content = answer_tag_content(response)
    if content is not None:
        boxed = last_boxed(content)
        return boxed.strip() if boxed is not None else strip_lead_in(content.strip())
    boxed = last_boxed(response)
    return boxed.strip() if boxed is not None else None


def plain_number(text: str) -> Fraction | None:
    """``text`` as an exact number if it is nothing but a decimal number (``1,200``, ``-3.50``)."""
    text = text.strip()
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    return Fraction(text.replace(",", "").rstrip("."))


def last_number(text: str) -> Fraction | None:
    """The last decimal number written in ``text`` (thousands commas allowed), or None."""
    last = None
    for match in _NUMBER_RE.finditer(text):
        last = match
    if last is None:
        return None
    return Fraction(last.group(0).replace(",", ""))
