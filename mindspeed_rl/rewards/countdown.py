"""Countdown accuracy: an equation that uses each given number exactly once and hits the target.

The equation is model output, so it is never handed to ``eval``: it is parsed with ``ast`` after
size and nesting checks, only ``+ - * /``, parentheses and integer literals are accepted, and it is
evaluated exactly with fractions. ``9**9**9**9`` is refused before anything is computed.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable
from fractions import Fraction

from mindspeed_rl.rewards.base import NO_ANSWER, WRONG, Score
from mindspeed_rl.rewards.extract import extract_answer

MAX_EXPRESSION_CHARS = 200
MAX_NESTING = 16
MAX_NODES = 64
# LaTeX and Unicode spellings of the four operations that models write.
_SPELLINGS = {
    "\\times": "*",
    "\\cdot": "*",
    "\\div": "/",
    "×": "*",
    "÷": "/",
    "−": "-",
    "\\left": "",
    "\\right": "",
    "\\(": "",
    "\\)": "",
    "$": "",
}
_BINARY_OPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class ExpressionError(ValueError):
    """The equation is not a valid Countdown expression; the message says why."""


def parse_label(label: str) -> tuple[list[int], int]:
    """``(nums, target)`` from the canonical label ``{"nums": [...], "target": N}``."""
    spec = json.loads(label)
    nums, target = spec["nums"], spec["target"]
    if not all(isinstance(n, int) for n in nums) or not isinstance(target, int):
        raise ValueError("nums and target must be integers")
    return list(nums), target


def _max_nesting(expression: str) -> int:
    depth = deepest = 0
    for ch in expression:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ExpressionError("division by zero")
        return _BINARY_OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, used)
    what = type(node.op if isinstance(node, (ast.BinOp, ast.UnaryOp)) else node).__name__
    raise ExpressionError(f"{what} is not allowed; only + - * / and parentheses")


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]]:
    """The exact value of an arithmetic expression and the integer literals it uses, in order.

    Raises :class:`ExpressionError` for anything but integers, ``+ - * /`` and parentheses, for
    expressions over :data:`MAX_EXPRESSION_CHARS` characters, :data:`MAX_NESTING` levels of
    parentheses or :data:`MAX_NODES` syntax nodes, and for division by zero.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError("expression too long")
    # CPython's parser itself fails on deep nesting; refuse before it gets to see it.
    if _max_nesting(expression) > MAX_NESTING:
        raise ExpressionError("too deeply nested")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError("not an arithmetic expression") from err
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError("expression too large")
    used: list[int] = []
    return _evaluate(tree.body, used), used


def countdown_equation(answer: str) -> str:
    """The expression part of an answer: operators respelled, a trailing ``= target`` dropped."""
    for spelling, plain in _SPELLINGS.items():
        answer = answer.replace(spelling, plain)
    return answer.split("=", 1)[0].strip()


def countdown_accuracy(response: str, label: str) -> Score:
    """1.0 if the final answer is an equation over exactly the given numbers equal to the target."""
    try:
        try:
            nums, target = parse_label(label)
        except (ValueError, KeyError, TypeError):
            return Score(0.0, "bad label")
        answer = extract_answer(response)
        if answer is None:
            return Score(0.0, NO_ANSWER)
        try:
            value, used = evaluate_expression(countdown_equation(answer))
        except ExpressionError as err:
            return Score(0.0, str(err))
        if sorted(used) != sorted(nums):
            return Score(0.0, "numbers not used exactly once each")
        return Score(1.0) if value == target else Score(0.0, WRONG)
    except Exception as err:  # a scorer never raises on model output
        return Score(0.0, f"error: {type(err).__name__}")
