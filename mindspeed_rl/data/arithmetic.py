"""A seeded arithmetic task generator: ``a + b`` / ``a - b`` questions, disjoint train/test.

The CPU quick-start's task. SmolLM2-135M-Instruct cannot solve GSM8K or Countdown at all (0 of
64, greedy and sampled), so GRPO would get no reward signal there; two-digit-plus-one-digit
arithmetic is where it is right sometimes (about a quarter greedily, about half within 8 samples)
and can be taught to be right more often. The space of questions is small, so the generator
enumerates it, shuffles it, and cuts the test split off first: no test question is trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OPERATORS = ("+", "-")


@dataclass
class ArithmeticConfig:
    """Shape of the generated questions ``What is a OP b?``."""

    seed: int = 0
    ops: str = "+-"
    """Operators to draw from, any of ``+-``."""
    first_min: int = 10
    first_max: int = 99
    """The first operand ``a`` is in first_min..first_max."""
    second_min: int = 1
    second_max: int = 9
    """The second operand ``b`` is in second_min..second_max."""
    test_rows: int = 200
    """Questions held out for validation; every other question goes to train."""

    def __post_init__(self) -> None:
        if not self.ops or any(op not in OPERATORS for op in self.ops):
            raise ValueError(f"ops must be made of {''.join(OPERATORS)}, got {self.ops!r}")
        if not 0 <= self.first_min <= self.first_max or not 0 <= self.second_min <= self.second_max:
            raise ValueError("operand ranges need 0 <= min <= max")
        if self.test_rows < 1:
            raise ValueError(f"test_rows must be >= 1, got {self.test_rows}")
        if self.test_rows >= self.space():
            raise ValueError(
                f"test_rows={self.test_rows} leaves no training questions: the ranges give only "
                f"{self.space()} distinct questions; widen them or lower test_rows"
            )

    def space(self) -> int:
        """How many distinct questions the ranges and operators allow."""
        firsts = self.first_max - self.first_min + 1
        seconds = self.second_max - self.second_min + 1
        return len(set(self.ops)) * firsts * seconds


def arithmetic_row(a: int, op: str, b: int) -> dict:
    """One row: the question and its integer answer as the label."""
    value = a + b if op == "+" else a - b
    return {"question": f"What is {a} {op} {b}?", "label": str(value)}


def generate_arithmetic(config: ArithmeticConfig) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` rows ``{"question", "label"}``, disjoint; same config, same rows."""
    questions = [
        (a, op, b)
        for op in sorted(set(config.ops))
        for a in range(config.first_min, config.first_max + 1)
        for b in range(config.second_min, config.second_max + 1)
    ]
    random.Random(config.seed).shuffle(questions)
    rows = [arithmetic_row(*q) for q in questions]
    return rows[config.test_rows :], rows[: config.test_rows]
