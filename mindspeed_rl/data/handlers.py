"""Dataset handlers: one raw row in, a question and its canonical ground-truth label out.

A handler reads named fields. ``map_keys`` renames them for datasets that spell a field
differently (``{"problem": "prompt"}``) or nest it (``{"label": "reward_model.ground_truth"}``).
The label is what the rule scorers compare against: the final answer, not a full solution.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mindspeed_rl.errors import UserError
from mindspeed_rl.rewards.extract import last_boxed

GSM8K_MARK = "####"
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


class RowError(ValueError):
    """A row that a handler cannot use; the message says why, ``key`` names the field."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Example:
    """What a handler makes of one row."""

    question: str
    """The problem statement that goes into the prompt template."""
    label: str
    """The canonical ground truth the scorers compare against."""


class RowView:
    """A row as a handler sees it: fields by the handler's names, after ``map_keys``."""

    def __init__(self, row: Mapping[str, Any], map_keys: Mapping[str, str]):
        self._row = row
        self._map_keys = map_keys

    def key(self, name: str) -> str:
        """The row's key for the handler field ``name``."""
        return self._map_keys.get(name, name)

    def has(self, name: str) -> bool:
        """Whether the row has field ``name`` with a value other than null."""
        try:
            return self.value(name) is not None
        except RowError:
            return False

    def value(self, name: str) -> Any:
        """The value of field ``name``; a dotted key (``a.b``) reaches into nested objects."""
        key = self.key(name)
        node: Any = self._row
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise RowError(f"row has no key {key!r}", key)
            node = node[part]
        return node

    def text(self, name: str) -> str:
        """Field ``name`` as non-empty text (numbers are written out)."""
        value = self.value(name)
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            key = self.key(name)
            raise RowError(f"{key!r} must be text, got {type(value).__name__}", key)
        if not value.strip():
            raise RowError(f"{self.key(name)!r} is empty", self.key(name))
        return value


def deepscaler(row: RowView) -> Example:
    """DeepScaleR style: ``problem``, ``answer``, and ``solution`` when ``answer`` is absent."""
    question = row.text("problem")
    if row.has("answer"):
        return Example(question, row.text("answer").strip())
    if not row.has("solution"):
        key = row.key("answer")
        raise RowError(f"row has no key {key!r} (nor {row.key('solution')!r})", key)
    label = last_boxed(row.text("solution"))
    if not label or not label.strip():
        key = row.key("solution")
        raise RowError(f"no 'answer', and no \\boxed{{}} answer in {key!r}", key)
    return Example(question, label.strip())


def math(row: RowView) -> Example:
    """MATH: ``problem`` and ``solution``; the answer is the solution's last ``\\boxed{}``."""
    question = row.text("problem")
    label = last_boxed(row.text("solution"))
    if not label or not label.strip():
        key = row.key("solution")
        raise RowError(f"no \\boxed{{}} answer in {key!r}", key)
    return Example(question, label.strip())


def gsm8k_answer(solution: str) -> str | None:
    """The number after ``####`` in a GSM8K solution, thousands commas removed, or None."""
    if GSM8K_MARK not in solution:
        return None
    number = solution.rsplit(GSM8K_MARK, 1)[1].strip().replace(",", "")
    return number if _NUMBER_RE.fullmatch(number) else None


def gsm8k(row: RowView) -> Example:
    """GSM8K: ``question`` and ``answer``; the label is the number after ``####``."""
    question = row.text("question")
    label = gsm8k_answer(row.text("answer"))
    if label is None:
        key = row.key("answer")
        raise RowError(f"{key!r} does not end with '#### <number>'", key)
    return Example(question, label)


def countdown_question(nums: list[int], target: int) -> str:
    """The Countdown task statement for a prompt template."""
    return (
        f"Using the numbers {nums}, create an equation that equals {target}. You can use basic "
        "arithmetic operations (+, -, *, /) and parentheses, and each number must be used "
        "exactly once. Give the equation, e.g. (1 + 2) * 3, as the final answer."
    )


def countdown_label(nums: list[int], target: int) -> str:
    """The canonical Countdown label, read back by the countdown scorer."""
    return json.dumps({"nums": nums, "target": target})


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    return int(value) if int(value) == value else None


def countdown(row: RowView) -> Example:
    """Countdown: ``nums`` (a list of integers) and ``target`` (an integer)."""
    raw_nums, raw_target = row.value("nums"), row.value("target")
    nums = [_integer(n) for n in raw_nums] if isinstance(raw_nums, (list, tuple)) else None
    if not nums or any(n is None for n in nums):
        key = row.key("nums")
        raise RowError(f"{key!r} must be a non-empty list of integers", key)
    target = _integer(raw_target)
    if target is None:
        key = row.key("target")
        raise RowError(f"{key!r} must be an integer", key)
    return Example(countdown_question(nums, target), countdown_label(nums, target))


CHOICE_INSTRUCTION = "Answer with the letter of the correct option."
OPTION_LETTERS = "ABCDEFGHIJ"


def shuffled_options(question: str, correct: str, incorrect: list[str]) -> tuple[list[str], str]:
    """The options in an order fixed by the question's text (the same file gives the same
    prompts on every machine and run) and the letter the correct one lands on."""
    seed = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big")
    order = list(range(1 + len(incorrect)))
    random.Random(seed).shuffle(order)
    options = [correct, *incorrect]
    return [options[i] for i in order], OPTION_LETTERS[order.index(0)]


def gpqa(row: RowView) -> Example:
    """GPQA (its CSV's columns): ``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``.
    The question lists the four options as ``A) ...`` in a per-question shuffled order; the
    label is the correct option's letter (the ``choice`` scorer reads it)."""
    question = row.text("Question").strip()
    correct = row.text("Correct Answer").strip()
    incorrect = [row.text(f"Incorrect Answer {k}").strip() for k in (1, 2, 3)]
    options, letter = shuffled_options(question, correct, incorrect)
    listed = "\n".join(f"{a}) {o}" for a, o in zip(OPTION_LETTERS, options))
    return Example(f"{question}\n\n{listed}\n\n{CHOICE_INSTRUCTION}", letter)


def generic(row: RowView) -> Example:
    """Any dataset: ``question`` and ``label`` fields, renamed with ``map_keys``."""
    return Example(row.text("question"), row.text("label").strip())


@dataclass(frozen=True)
class Handler:
    """A named row converter and the fields it reads."""

    name: str
    fields: tuple[str, ...]
    convert: Callable[[RowView], Example]


HANDLERS: dict[str, Handler] = {
    h.name: h
    for h in (
        Handler("deepscaler", ("problem", "answer", "solution"), deepscaler),
        Handler("math", ("problem", "solution"), math),
        Handler("gsm8k", ("question", "answer"), gsm8k),
        Handler("countdown", ("nums", "target"), countdown),
        Handler(
            "gpqa",
            (
                "Question",
                "Correct Answer",
                "Incorrect Answer 1",
                "Incorrect Answer 2",
                "Incorrect Answer 3",
            ),
            gpqa,
        ),  # fmt: skip
        Handler("generic", ("question", "label"), generic),
    )
}


def get_handler(name: str, map_keys: Mapping[str, str]) -> Handler:
    """The handler ``name``, after checking that ``map_keys`` only renames its fields."""
    if name not in HANDLERS:
        known = ", ".join(HANDLERS)
        raise UserError(f"handler: unknown handler {name!r}; use one of {known}")
    handler = HANDLERS[name]
    for field_name in map_keys:
        if field_name not in handler.fields:
            fields = ", ".join(handler.fields)
            raise UserError(
                f"map_keys.{field_name}: handler {name!r} has no field {field_name!r}; "
                f"map one of {fields} to your dataset's key"
            )
    return handler
