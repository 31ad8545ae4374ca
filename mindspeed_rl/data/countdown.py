"""A seeded Countdown task generator, so the task needs no download.

Each row has 3 or 4 numbers and a target that some equation over all of them reaches using
``+ - * /`` (every intermediate result a positive integer, as in the game), plus that equation
as ``solution``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class CountdownConfig:
    """Shape of the generated puzzles."""

    rows: int = 20000
    seed: int = 0
    min_numbers: int = 3
    max_numbers: int = 4
    max_number: int = 99
    """Numbers are drawn from 1..max_number."""
    max_target: int = 999
    """Targets are in 1..max_target."""

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"rows must be >= 1, got {self.rows}")
        if not 2 <= self.min_numbers <= self.max_numbers <= 6:
            raise ValueError("need 2 <= min_numbers <= max_numbers <= 6")
        if self.max_number < 2 or self.max_target < 1:
            raise ValueError("max_number must be >= 2 and max_target >= 1")


def _combine(rng: random.Random, a: tuple[int, str], b: tuple[int, str]) -> tuple[int, str] | None:
    """``a op b`` for a random op, or None when it leaves the positive integers."""
    (x, ex), (y, ey) = a, b
    op = rng.choice("+-*/")
    if op == "+":
        return x + y, f"({ex} + {ey})"
    if op == "-":
        return (x - y, f"({ex} - {ey})") if x > y else None
    if op == "*":
        return x * y, f"({ex} * {ey})"
    return (x // y, f"({ex} / {ey})") if y > 1 and x % y == 0 else None


def _puzzle(rng: random.Random, config: CountdownConfig) -> dict | None:
    count = rng.randint(config.min_numbers, config.max_numbers)
    nums = [rng.randint(1, config.max_number) for _ in range(count)]
    items = [(n, str(n)) for n in nums]
    while len(items) > 1:
        a, b = rng.sample(range(len(items)), 2)
        combined = _combine(rng, items[a], items[b])
        if combined is None:
            return None
        items = [item for i, item in enumerate(items) if i not in (a, b)] + [combined]
    target, solution = items[0]
    if not 1 <= target <= config.max_target:
        return None
    return {"nums": nums, "target": target, "solution": solution}


def generate_countdown(config: CountdownConfig) -> list[dict]:
    """``config.rows`` puzzles ``{"nums", "target", "solution"}``; same config, same puzzles."""
    rng = random.Random(config.seed)
    rows: list[dict] = []
    while len(rows) < config.rows:
        puzzle = _puzzle(rng, config)
        if puzzle is not None:
            rows.append(puzzle)
    return rows
