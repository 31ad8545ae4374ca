"""Our ``math`` scorer against plain math-verify on answers written the ways models write them.

python bench/math_equivalence.py [--per-kind 12] [--seed 0] [--out bench/results/math_equivalence.json]

The cases are generated here, deterministically from the seed: competition-style ground
truths (integers, fractions, radicals, multiples of pi, points, intervals, sets, degrees,
units, percentages, money, polynomials, equations, choices, names, matrices, complex
numbers) with random values, each rewritten into spellings a model writes for the same answer
(``\\dfrac``, ``a/b``, a decimal of a simple fraction, ``x = 5``, ``\\left( ... \\right)`` with
no ``$``, ``^\\circ`` / ``°``, ``\\text{ cm}``, thousands separators, a trailing period, another
order of a set) and into near misses that must be rejected (a changed digit, a dropped sign or
pi, the reciprocal, an open end of an interval made closed, a swapped point, an anagram).
Every answer is put into three response shapes: bare inside ``<answer>`` tags, ``\\boxed{}``
inside the tags, and a sentence ending in ``$\\boxed{...}$``.

Both scorers see the same (response, ground truth) pairs, in the same run:

- ours: ``mindspeed_rl.rewards.math.math_accuracy(response, gold)``;
- for reference, math-verify on our extracted answer (``extract_answer``) put in ``\\boxed{}``;
- math-verify as people call it: ``verify(parse("\\boxed{gold}"), parse(response))`` with its
  default extraction and timeouts, the gold parsed once per distinct gold (as ours caches it).

Reported: recall on equivalent forms, false-accept rate on near misses, both overall, per
response shape and per kind, the cases each scorer gets wrong (a sample), and samples/s of a
single process (caches cleared first).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402

REASONING = "Let me set up the problem and simplify step by step; checking the result, it holds."


@dataclass(frozen=True)
class Case:
    """One (ground truth, answer) pair: ``equivalent`` says whether the answer is right."""

    kind: str
    gold: str
    answer: str
    equivalent: bool


SHAPES: dict[str, Callable[[str], str]] = {
    "answer_tags": lambda a: f"<think>{REASONING}</think> <answer>{a}</answer>",
    "boxed_in_tags": lambda a: f"<think>{REASONING}</think> <answer>\\boxed{{{a}}}</answer>",
    "sentence_boxed": lambda a: f"{REASONING} The final answer is $\\boxed{{{a}}}$.",
    # Bare LaTeX after a lead-in inside the tags: no \boxed{}, no $...$ (what a new user's
    # models wrote on a public competition set).
    "lead_in_in_tags": lambda a: (
        f"<think>{REASONING}</think> <answer>The final answer is {a}</answer>"
    ),
    "colon_in_tags": lambda a: f"<think>{REASONING}</think> <answer>Answer: {a}</answer>",
}


def _frac(p: int, q: int) -> str:
    return f"\\frac{{{p}}}{{{q}}}"


def _terminating(q: int) -> bool:
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    return q == 1


def _decimal(x: Fraction) -> str:
    # Exact decimal of a fraction with a terminating expansion.
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    assert Fraction(text) == x, (x, text)
    return text


def _thousands(n: int, sep: str = ",") -> str:
    return f"{n:,}".replace(",", sep)


# Each generator returns (gold, equivalent answers, near misses) for one random instance.
Generator = Callable[[random.Random], tuple[str, list[str], list[str]]]


def _integer(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.choice([rng.randint(0, 99), rng.randint(100, 999), -rng.randint(1, 99)])
    return (
        str(n),
        [str(n), f"{n}.0", f"x = {n}", f"{n}.", f"n={n}", f"\\text{{{n}}}", f"{{{n}}}"],
        [
            str(n + 1),
            str(-n - 1) if n >= 0 else str(-n),
            str(n * 10 + 1),
            f"{n}.5",
            f"{n}\\sqrt{{2}}",
            f"{n}\\pi",
            f"{n}^2" if n not in (0, 1) else f"{n}+2",
        ],  # fmt: skip
    )


def _big_integer(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.randint(1000, 999_999)
    changed = n + rng.choice([1, 10, 100])
    return (
        str(n),
        [_thousands(n), _thousands(n, "{,}"), _thousands(n, "\\,"), f"{n}", f"{_thousands(n)}."],
        # A comma that is not a thousands separator makes a pair of numbers.
        [_thousands(changed), str(n // 10), f"{n}0", f"{n // 10000},{n % 10000:04d}"],
    )


def _gold_with_thousands(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.randint(1000, 99_999)
    return (
        _thousands(n, "{,}"),
        [str(n), _thousands(n)],
        [str(n + 1), _thousands(n + 100)],
    )


def _fraction(rng: random.Random) -> tuple[str, list[str], list[str]]:
    q = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 16, 20, 25])
    p = rng.choice([k for k in range(1, 3 * q) if Fraction(k, q).denominator == q])
    value = Fraction(p, q)
    gold = _frac(p, q)
    eq = [f"\\dfrac{{{p}}}{{{q}}}", f"\\tfrac{{{p}}}{{{q}}}", f"{p}/{q}", _frac(2 * p, 2 * q),
          f"{p} / {q}", f"\\displaystyle\\frac{{{p}}}{{{q}}}", f"{{{p} \\over {q}}}"]  # fmt: skip
    if p < 10 and q < 10:
        eq.append(f"\\frac{p}{q}")
    if _terminating(q):
        eq.append(_decimal(value))
    near = [_frac(q, p) if p != q else _frac(p + 1, q), _frac(p + 1, q), f"{p}/{q + 1}"]
    if not _terminating(q):
        # A rounded decimal is not the fraction.
        near.append(f"{float(value):.2f}")
    return gold, eq, near


def _negative_fraction(rng: random.Random) -> tuple[str, list[str], list[str]]:
    q = rng.choice([3, 4, 5, 7, 8, 9])
    p = rng.choice([k for k in range(1, q) if Fraction(k, q).denominator == q])
    gold = f"-{_frac(p, q)}"
    return (
        gold,
        [
            f"-\\dfrac{{{p}}}{{{q}}}",
            f"\\frac{{-{p}}}{{{q}}}",
            f"-{p}/{q}",
            f"\\left(-{_frac(p, q)}\\right)",
        ],
        [_frac(p, q), f"{p}/{q}", f"-{_frac(q, p)}"],
    )


def _decimal_gold(rng: random.Random) -> tuple[str, list[str], list[str]]:
    q = rng.choice([2, 4, 5, 8, 20])
    p = rng.choice([k for k in range(1, 4 * q) if Fraction(k, q).denominator == q])
    value = Fraction(p, q)
    text = _decimal(value)
    alt = text[1:] if text.startswith("0.") else text + "0"
    return (
        text,
        [_frac(p, q), f"{p}/{q}", alt, f"\\dfrac{{{p}}}{{{q}}}"],
        [
            _decimal(value + Fraction(1, 10)),
            _frac(q, p) if p != q else _frac(p, q + 1),
            text.replace(".", ""),
        ],
    )


def _radical(rng: random.Random) -> tuple[str, list[str], list[str]]:
    c = rng.randint(2, 9)
    d = rng.choice([2, 3, 5, 6, 7, 10, 11, 13])
    return (
        f"{c}\\sqrt{{{d}}}",
        [
            f"{c} \\sqrt{{{d}}}",
            f"{c}\\sqrt {d}" if d < 10 else f"{c}\\sqrt{{ {d} }}",
            f"\\sqrt{{{c * c * d}}}",
            f"{c}\\cdot\\sqrt{{{d}}}",
        ],
        [
            f"{c + 1}\\sqrt{{{d}}}",
            f"{c}\\sqrt{{{d + 1}}}",
            f"\\sqrt{{{c * d}}}",
            f"{c * d**0.5:.3f}",
        ],  # fmt: skip
    )


def _radical_fraction(rng: random.Random) -> tuple[str, list[str], list[str]]:
    d = rng.choice([2, 3, 5, 7])
    q = rng.choice([2, 3, 4, 6])
    return (
        f"\\frac{{\\sqrt{{{d}}}}}{{{q}}}",
        [
            f"\\dfrac{{\\sqrt{{{d}}}}}{{{q}}}",
            f"\\sqrt{{{d}}}/{q}",
            f"\\frac{{\\sqrt{d}}}{{{q}}}",
            f"\\frac{{1}}{{{q}}}\\sqrt{{{d}}}",
        ],
        [
            f"\\frac{{\\sqrt{{{d}}}}}{{{q + 1}}}",
            f"\\frac{{{q}}}{{\\sqrt{{{d}}}}}",
            f"\\frac{{{d}}}{{{q}}}",
        ],
    )


def _pi_multiple(rng: random.Random) -> tuple[str, list[str], list[str]]:
    q = rng.choice([2, 3, 4, 6])
    p = rng.choice([k for k in range(1, 4 * q) if Fraction(k, q).denominator == q])
    return (
        f"\\frac{{{p}\\pi}}{{{q}}}",
        [
            f"\\dfrac{{{p}\\pi}}{{{q}}}",
            f"{p}\\pi/{q}",
            f"\\frac{{{p}}}{{{q}}}\\pi",
            f"\\frac{{{p} \\pi}}{{{q}}}",
        ],
        [
            _frac(p, q),
            f"\\frac{{{p + 1}\\pi}}{{{q}}}",
            f"\\frac{{{q}\\pi}}{{{p}}}" if p != q else f"{p}\\pi",
            f"{3.14159 * p / q:.2f}",  # a decimal approximation is not the exact value
        ],
    )


def _polar_point(rng: random.Random) -> tuple[str, list[str], list[str]]:
    c = rng.randint(1, 9)
    q = rng.choice([2, 3, 4, 6])
    gold = f"\\left( {c}, \\frac{{\\pi}}{{{q}}} \\right)"
    return (
        gold,
        [
            f"({c}, \\frac{{\\pi}}{{{q}}})",
            f"({c},\\pi/{q})",
            f"\\left({c},\\dfrac{{\\pi}}{{{q}}}\\right)",
            f"\\left( {c}, \\frac{{\\pi}}{{{q}}} \\right).",
            f"\\bigl({c}, \\tfrac{{\\pi}}{{{q}}}\\bigr)",
        ],
        [
            f"({c + 1}, \\frac{{\\pi}}{{{q}}})",
            f"(\\frac{{\\pi}}{{{q}}}, {c})",
            f"({c}, \\frac{{\\pi}}{{{q + 1}}})",
            str(c),
        ],
    )


def _point(rng: random.Random) -> tuple[str, list[str], list[str]]:
    q = rng.choice([2, 3])
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    while Fraction(b, q) == a:  # the swapped point would be the same point
        b = rng.randint(-9, 9)
    gold = f"\\left( {a}, {_frac(b, q)} \\right)"
    return (
        gold,
        [
            f"({a}, {b}/{q})",
            f"({a},\\dfrac{{{b}}}{{{q}}})",
            f"\\left({a}, {_frac(2 * b, 2 * q)}\\right)",
        ],
        [f"({_frac(b, q)}, {a})", f"({a}, {_frac(b + 1, q)})", f"({a + 1}, {b}/{q})"],
    )


def _interval(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a = rng.randint(-9, 5)
    b = a + rng.randint(1, 9)
    left, right = rng.choice([("[", "]"), ("(", ")"), ("[", ")"), ("(", "]")])
    if (left, right) == ("(", ")"):
        # "(a, b)" is also a point; keep the open interval only with infinity below.
        left = "["
    gold = f"{left}{a},{b}{right}"
    flip = {"[": "(", "(": "[", "]": ")", ")": "]"}
    # The same interval as an inequality, and with the wrong end closed.
    low, wrong_low = ("\\le", "<") if left == "[" else ("<", "\\le")
    high = "\\le" if right == "]" else "<"
    return (
        gold,
        [f"{left}{a}, {b}{right}", f"\\left{left} {a}, {b} \\right{right}", f"{left}{a} ,{b}{right}.",
         f"x \\in {left}{a}, {b}{right}",
         f"{a} {low} x {high} {b}"],
        [f"{flip[left]}{a}, {b}{right}", f"{left}{a}, {b}{flip[right]}",
         f"{left}{a}, {b + 1}{right}", f"{left}{a - 1}, {b}{right}",
         f"{a} {wrong_low} x {high} {b}"],
    )  # fmt: skip


def _infinite_interval(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a = rng.randint(-9, 9)
    if rng.random() < 0.5:
        gold = f"(-\\infty, {a}]"
        eq = [f"(-\\infty,{a}]", f"\\left(-\\infty, {a}\\right]", f"(-\\infty , {a}]",
              f"x \\le {a}", f"x \\leq {a}"]  # fmt: skip
        near = [f"(-\\infty, {a})", f"(-\\infty, {a + 1}]", f"[{a}, \\infty)", f"x < {a}"]
    else:
        gold = f"({a},\\infty)"
        eq = [f"({a}, \\infty)", f"\\left( {a}, \\infty \\right)", f"({a}, +\\infty)", f"x > {a}"]
        near = [f"[{a}, \\infty)", f"({a - 1}, \\infty)", f"(-\\infty, {a})", f"x \\ge {a}"]
    return gold, eq, near


def _union(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a = rng.randint(-9, 0)
    b = a + rng.randint(1, 5)
    gold = f"(-\\infty,{a})\\cup({b},\\infty)"
    return (
        gold,
        [
            f"(-\\infty, {a}) \\cup ({b}, \\infty)",
            f"\\left(-\\infty,{a}\\right)\\cup\\left({b},\\infty\\right)",
        ],
        [
            f"(-\\infty, {a}] \\cup ({b}, \\infty)",
            f"(-\\infty, {a}) \\cup ({b + 1}, \\infty)",
            f"({a}, {b})",
        ],
    )


def _solutions(rng: random.Random) -> tuple[str, list[str], list[str]]:
    values = rng.sample(range(-9, 10), 2)
    a, b = sorted(values)
    gold = f"{a}, {b}"
    return (
        gold,
        [
            f"{b}, {a}",
            f"{a},{b}",
            f"\\{{{a}, {b}\\}}",
            f"\\{{{b},{a}\\}}",
            f"x = {a}, {b}",
            f"x = {a} \\text{{ or }} x = {b}",
            f"x={b}, x={a}",
        ],  # fmt: skip
        [f"{a}, {b + 1}", f"{a}", f"{-a}, {b}" if a != 0 else f"{a + 1}, {b}"],
    )


def _set(rng: random.Random) -> tuple[str, list[str], list[str]]:
    values = sorted(rng.sample(range(-9, 10), 3))
    a, b, c = values
    gold = f"\\{{{a}, {b}, {c}\\}}"
    return (
        gold,
        [
            f"\\{{{c}, {a}, {b}\\}}",
            f"\\{{{a},{b},{c}\\}}",
            f"{a}, {b}, {c}",
            f"\\left\\{{ {a}, {b}, {c} \\right\\}}",
        ],
        [f"\\{{{a}, {b}\\}}", f"\\{{{a}, {b}, {c + 1}\\}}", f"\\{{{a}, {b}, {c}, {c + 1}\\}}"],
    )


def _degrees(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.choice([15, 30, 36, 45, 60, 72, 75, 90, 108, 120, 135, 150])
    gold = rng.choice([f"{n}^\\circ", str(n)])
    return (
        gold,
        [
            str(n),
            f"{n}^\\circ",
            f"{n}^{{\\circ}}",
            f"{n}°",
            f"{n}^\\circ.",
            f"{n} ^\\circ",
            f"{n} \\text{{ degrees}}",
            f"{n}^{{\\circ}}\\text{{ degrees}}",
        ],  # fmt: skip
        [f"{n + 90}^\\circ", str(n + 1), f"{n + 10}^{{\\circ}}"],
    )


def _units(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.randint(2, 500)
    unit = rng.choice(["cm", "inches", "meters", "dollars", "square units", "feet", "cm^2"])
    gold = rng.choice([str(n), f"{n}\\text{{ {unit}}}"])
    return (
        gold,
        [
            f"{n} \\text{{ {unit}}}",
            f"{n}\\text{{{unit}}}",
            f"\\text{{{n} {unit}}}",
            f"{n}\\mbox{{ {unit}}}",
            str(n),
        ],
        [f"{n + 1} \\text{{ {unit}}}", f"{n * 2}\\text{{ {unit}}}", str(n - 1)],
    )


def _percent(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.randint(1, 99)
    return (
        f"{n}\\%",
        [f"{n}%", str(n), f"{n} \\%", f"{n}\\%.", f"{n}.0\\%"],
        [f"{n + 1}\\%", f"{n + 5}%", str(n * 10 + 1)],
    )


def _money(rng: random.Random) -> tuple[str, list[str], list[str]]:
    cents = rng.randint(101, 2_000_000)
    dollars = f"{cents // 100}.{cents % 100:02d}"
    with_commas = f"{cents // 100:,}.{cents % 100:02d}"
    changed = f"{cents // 100}.{(cents + 1) % 100:02d}"
    return (
        f"\\${dollars}",
        [
            dollars,
            f"\\${dollars}",
            f"\\$ {dollars}",
            f"{dollars} \\text{{ dollars}}",
            f"\\${with_commas}",
            f"\\text{{\\$}}{with_commas}",
            dollars.rstrip("0").rstrip("."),
        ],  # fmt: skip
        [changed, f"\\${cents // 100 + 1}.{cents % 100:02d}", f"\\${cents}"],
    )


def _polynomial(rng: random.Random) -> tuple[str, list[str], list[str]]:
    r, s = rng.randint(1, 6), rng.randint(1, 6)
    b, c = r + s, r * s
    gold = f"x^2+{b}x+{c}"
    return (
        gold,
        [f"x^2 + {b}x + {c}", f"(x+{r})(x+{s})", f"{c}+{b}x+x^2", f"x^{{2}}+{b}x+{c}"],
        [f"x^2+{b}x+{c + 1}", f"x^2-{b}x+{c}", f"x^2+{b + 1}x+{c}", f"(x-{r})(x+{s})"],
    )


def _linear(rng: random.Random) -> tuple[str, list[str], list[str]]:
    m, k = rng.randint(2, 9), rng.randint(1, 9)
    gold = f"{m}x-{k}"
    return (
        gold,
        [f"{m}x - {k}", f"-{k}+{m}x", f"{m} x-{k}"],
        [f"{m}x+{k}", f"{m + 1}x-{k}", f"{k}x-{m}" if k != m else f"{m}x"],
    )


def _equation(rng: random.Random) -> tuple[str, list[str], list[str]]:
    m, k = rng.randint(2, 9), rng.randint(1, 9)
    gold = f"y = {m}x + {k}"
    return (
        gold,
        [f"y={m}x+{k}", f"y = {k} + {m}x", f"y = {m} x + {k}", f"{m}x+{k}=y"],
        [f"y = {m}x - {k}", f"y = {m + 1}x + {k}", f"y = {k}x + {m}" if k != m else f"y = {m}x"],
    )


def _choice(rng: random.Random) -> tuple[str, list[str], list[str]]:
    letter = rng.choice("ABCDE")
    other = rng.choice([c for c in "ABCDE" if c != letter])
    return (
        f"\\text{{({letter})}}",
        [
            f"({letter})",
            letter,
            f"\\text{{({letter})}}",
            f"\\textbf{{({letter})}}",
            f"\\text{{{letter}}}",
            f"\\textbf{{{letter}}}",
            f"\\mathrm{{({letter})}}",
        ],
        [f"({other})", other, f"\\text{{({other})}}"],
    )


_NAMES = ["Evelyn", "Lauren", "Marcus", "Tuesday", "Sunday", "Carla", "Denis", "Brenda"]


def _name(rng: random.Random) -> tuple[str, list[str], list[str]]:
    name = rng.choice(_NAMES)
    letters = list(name.lower())
    rng.shuffle(letters)
    anagram = "".join(letters).capitalize()
    if anagram == name:
        anagram = name[::-1].capitalize()
    other = rng.choice([n for n in _NAMES if n != name])
    return (
        f"\\text{{{name}}}",
        [
            name,
            f"\\text{{{name}}}",
            name.lower(),
            f"\\textbf{{{name}}}",
            f"{name}.",
            f"\\mathrm{{{name}}}",
        ],
        [anagram, other, f"\\text{{{other}}}"],
    )


def _matrix(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    gold = f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}"
    return (
        gold,
        [
            f"\\begin{{pmatrix}}{a}\\\\{b}\\end{{pmatrix}}",
            f"\\begin{{pmatrix}} {a}\\\\ {b}\\end{{pmatrix}}",
            f"\\begin{{bmatrix}} {a} \\\\ {b} \\end{{bmatrix}}",
        ],
        [
            f"\\begin{{pmatrix}} {a} \\\\ {b + 1} \\end{{pmatrix}}",
            f"\\begin{{pmatrix}} {b + 10} \\\\ {a} \\end{{pmatrix}}",
        ],
    )


def _complex(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    gold = f"{a}+{b}i"
    return (
        gold,
        [f"{a} + {b}i", f"{b}i+{a}", f"{a}+{b} i"],
        [f"{a}-{b}i", f"{a}+{b + 1}i", f"{b}+{a}i" if a != b else f"{a}i"],
    )


def _power(rng: random.Random) -> tuple[str, list[str], list[str]]:
    base, exp = rng.choice([2, 3, 5]), rng.randint(3, 9)
    value = base**exp
    return (
        str(value),
        [
            f"{base}^{{{exp}}}",
            f"{base}^{exp}" if exp < 10 else f"{base}^{{{exp}}}",
            _thousands(value),
        ],
        [f"{base}^{{{exp + 1}}}", str(value + base), f"{base + 1}^{{{exp}}}"],
    )


# -- the precision set: near misses built to tempt a lenient scorer ---------------------------


def _tempt_digits(rng: random.Random) -> tuple[str, list[str], list[str]]:
    # Right digits, wrong structure.
    a, b = rng.choice([(3, 4), (5, 7), (2, 9), (7, 8), (4, 9)])
    return (
        f"\\frac{{{a}}}{{{b}}}",
        [f"{a}/{b}", f"\\dfrac{{{a}}}{{{b}}}", f"\\frac{a}{b}"],
        [f"{a}{b}", f"{a}.{b}", f"\\frac{{{b}}}{{{a}}}", f"{a}^{{{b}}}", f"\\frac{{{a}{b}}}{{1}}"],
    )


def _tempt_radical_sign(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10])
    return (
        f"{a}+\\sqrt{{{b}}}",
        [f"\\sqrt{{{b}}}+{a}", f"{a} + \\sqrt {b}" if b < 10 else f"{a} + \\sqrt{{{b}}}"],
        [f"{a}-\\sqrt{{{b}}}", f"-{a}+\\sqrt{{{b}}}", f"{a}+\\sqrt{{{b + 1}}}",
         f"\\sqrt{{{a}+{b}}}", f"{a}\\sqrt{{{b}}}"],
    )  # fmt: skip


def _tempt_golden(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.choice([5, 13, 17])
    return (
        f"\\frac{{1+\\sqrt{{{n}}}}}{{2}}",
        [f"\\frac{{\\sqrt{{{n}}}+1}}{{2}}", f"\\dfrac{{1 + \\sqrt{{{n}}}}}{{2}}"],
        [f"\\frac{{1-\\sqrt{{{n}}}}}{{2}}", f"\\frac{{\\sqrt{{{n}}}-1}}{{2}}",
         f"1+\\frac{{\\sqrt{{{n}}}}}{{2}}", f"\\frac{{1+\\sqrt{{{n}}}}}{{4}}"],
    )  # fmt: skip


def _tempt_point_swap(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a, b = rng.sample(range(-9, 10), 2)
    return (
        f"({a}, {b})",
        [f"({a},{b})", f"\\left({a}, {b}\\right)"],
        [f"({b}, {a})", f"({a}, {-b})" if b else f"({a}, 1)", f"[{min(a, b)}, {max(a, b)}]"],
    )


def _tempt_interval_end(rng: random.Random) -> tuple[str, list[str], list[str]]:
    a = rng.randint(-9, 5)
    b = a + rng.randint(2, 9)
    return (
        f"[{a}, {b})",
        [f"[{a},{b})", f"\\left[{a}, {b}\\right)"],
        [f"[{a}, {b + 1})", f"[{a - 1}, {b})", f"({a}, {b})", f"[{a}, {b}]"],
    )


def _tempt_units(rng: random.Random) -> tuple[str, list[str], list[str]]:
    # The gold is in hours; minutes change the number, a unit must not be stripped blindly.
    halves = rng.choice([3, 5, 7, 9])  # a half hour: the decimal has a point
    hours = Fraction(halves, 2)
    text = _decimal(hours)
    return (
        text,
        [f"{text} \\text{{ hours}}", f"\\frac{{{halves}}}{{2}}", f"{text} hours"],
        [f"{int(hours * 60)} \\text{{ minutes}}", f"{int(hours * 60)} minutes",
         text.replace(".", ""), f"{text} \\times 10^{{2}}"],
    )  # fmt: skip


def _tempt_negation(rng: random.Random) -> tuple[str, list[str], list[str]]:
    n = rng.randint(3, 99)  # 2! = 2
    return (
        str(n),
        [f"{n}.0", f"+{n}", f"x = {n}"],
        [f"-{n}", f"\\frac{{1}}{{{n}}}", f"{n}^{{-1}}", f"\\text{{not }} {n}", f"{n}!"],
    )


def _tempt_polynomial(rng: random.Random) -> tuple[str, list[str], list[str]]:
    b, c = rng.randint(2, 9), rng.randint(2, 9)
    return (
        f"x^3+{b}x-{c}",
        [f"x^{{3}}+{b}x-{c}", f"{b}x+x^3-{c}", f"x^3 + {b} x - {c}"],
        [f"x^3+{b}x+{c}", f"x^2+{b}x-{c}", f"{b}x^3+x-{c}", f"x^3-{b}x-{c}"],
    )


def _infinity(rng: random.Random) -> tuple[str, list[str], list[str]]:
    return "\\infty", ["\\infty", "+\\infty", "\\infty."], ["-\\infty", "0", "1"]


GENERATORS: dict[str, Generator] = {
    "integer": _integer,
    "thousands": _big_integer,
    "gold_thousands": _gold_with_thousands,
    "fraction": _fraction,
    "negative_fraction": _negative_fraction,
    "decimal": _decimal_gold,
    "radical": _radical,
    "radical_fraction": _radical_fraction,
    "pi": _pi_multiple,
    "polar_point": _polar_point,
    "point": _point,
    "interval": _interval,
    "infinite_interval": _infinite_interval,
    "union": _union,
    "solutions": _solutions,
    "set": _set,
    "degrees": _degrees,
    "units": _units,
    "percent": _percent,
    "money": _money,
    "polynomial": _polynomial,
    "linear": _linear,
    "equation": _equation,
    "choice": _choice,
    "name": _name,
    "matrix": _matrix,
    "complex": _complex,
    "power": _power,
    "infinity": _infinity,
    "tempt_digits": _tempt_digits,
    "tempt_radical_sign": _tempt_radical_sign,
    "tempt_golden": _tempt_golden,
    "tempt_point_swap": _tempt_point_swap,
    "tempt_interval_end": _tempt_interval_end,
    "tempt_units": _tempt_units,
    "tempt_negation": _tempt_negation,
    "tempt_polynomial": _tempt_polynomial,
}
PRECISION_KINDS = tuple(k for k in GENERATORS if k.startswith("tempt_"))
"""Kinds whose near misses are built to tempt a lenient scorer: the precision set."""


def make_cases(per_kind: int = 12, seed: int = 0) -> list[Case]:
    """``per_kind`` random instances of every kind, each with its equivalent answers and near
    misses; duplicates (same gold and answer) are dropped. Deterministic in ``seed``."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    cases = []
    for kind, generate in GENERATORS.items():
        for _ in range(per_kind):
            gold, equivalent, near = generate(rng)
            for answers, right in ((equivalent, True), (near, False)):
                for answer in answers:
                    if (gold, answer) in seen:
                        continue
                    seen.add((gold, answer))
                    cases.append(Case(kind, gold, answer, right))
    return cases


def ours() -> Callable[[str, str], bool]:
    """Our scorer, caches cleared so the timing starts cold."""
    from mindspeed_rl.rewards import math as ours_math

    ours_math.judge_equivalent.cache_clear()
    ours_math._parse_gold.cache_clear()
    return lambda response, gold: ours_math.math_accuracy(response, gold).value == 1.0


def plain_math_verify() -> Callable[[str, str], bool]:
    """math-verify as it is usually called: the gold in ``\\boxed{}``, the raw response."""
    from math_verify import parse, verify

    golds: dict[str, list] = {}

    def judge(response: str, gold: str) -> bool:
        try:
            if gold not in golds:
                golds[gold] = parse("\\boxed{" + gold + "}")
            return bool(verify(golds[gold], parse(response)))
        except Exception:
            return False

    return judge


def math_verify_on_extracted() -> Callable[[str, str], bool]:
    """math-verify given our extracted answer in ``\\boxed{}`` (no normalisation): how much of
    the gap is finding the answer and how much is reading it."""
    from math_verify import parse, verify

    from mindspeed_rl.rewards.extract import extract_answer

    golds: dict[str, list] = {}

    def judge(response: str, gold: str) -> bool:
        try:
            if gold not in golds:
                golds[gold] = parse("\\boxed{" + gold + "}")
            answer = extract_answer(response)
            return answer is not None and bool(verify(golds[gold], parse(f"\\boxed{{{answer}}}")))
        except Exception:
            return False

    return judge


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def run_interleaved(
    judges: dict[str, Callable[[str, str], bool]], samples: list[tuple[Case, str, str]], chunk: int
) -> tuple[dict[str, list[bool]], dict[str, float]]:
    """Every judge's verdict on every sample and its seconds, the judges taking turns on
    chunks of samples so that load from other processes falls on both alike."""
    verdicts: dict[str, list[bool]] = {name: [] for name in judges}
    seconds = dict.fromkeys(judges, 0.0)
    for start in range(0, len(samples), chunk):
        block = samples[start : start + chunk]
        for name, judge in judges.items():
            began = time.perf_counter()
            verdicts[name] += [judge(response, case.gold) for case, _, response in block]
            seconds[name] += time.perf_counter() - began
    return verdicts, seconds


def summarize(
    samples: list[tuple[Case, str, str]], verdicts: list[bool], seconds: float
) -> tuple[dict, list[tuple[Case, str, bool]]]:
    """Recall, false-accept rate (overall, per shape, per kind), samples/s and the misses."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # eq, eq ok, neq, neq ok
    misses = []
    for (case, shape, _), accepted in zip(samples, verdicts, strict=True):
        for key in ("all", f"shape/{shape}", f"kind/{case.kind}"):
            c = counts[key]
            if case.equivalent:
                c[0] += 1
                c[1] += accepted
            else:
                c[2] += 1
                c[3] += accepted
        if accepted != case.equivalent:
            misses.append((case, shape, accepted))
    table = {
        key: {"recall": _rate(c[1], c[0]), "false_accept": _rate(c[3], c[2]),
              "equivalent": c[0], "non_equivalent": c[2]}
        for key, c in counts.items()
    }  # fmt: skip
    tempted = [accepted for (case, _, _), accepted in zip(samples, verdicts, strict=True)
               if case.kind in PRECISION_KINDS and not case.equivalent]  # fmt: skip
    report = {
        "recall": table["all"]["recall"],
        "false_accept_rate": table["all"]["false_accept"],
        "precision_set_false_accept_rate": _rate(sum(tempted), len(tempted)),
        "precision_set_near_misses": len(tempted),
        "samples": len(samples),
        "seconds": round(seconds, 3),
        "samples_per_s": round(len(samples) / seconds, 1),
        "by_shape": {k.split("/", 1)[1]: v for k, v in table.items() if k.startswith("shape/")},
        "by_kind": {k.split("/", 1)[1]: v for k, v in table.items() if k.startswith("kind/")},
    }
    return report, misses


def _miss_rows(misses: list[tuple[Case, str, bool]], limit: int) -> list[dict]:
    rows = []
    for case, shape, accepted in misses[:limit]:
        rows.append({"kind": case.kind, "gold": case.gold, "answer": case.answer,
                     "shape": shape, "verdict": "false accept" if accepted else "missed"})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=12, help="random instances per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-misses", type=int, default=40, help="misses listed per scorer")
    parser.add_argument("--chunk", type=int, default=100, help="samples per turn of a scorer")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    # Both scorers run with math-verify's logging quiet (it warns per call when timeouts are off).
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    cases = make_cases(args.per_kind, args.seed)
    report: dict = {
        "cases": {
            "equivalent": sum(c.equivalent for c in cases),
            "non_equivalent": sum(not c.equivalent for c in cases),
            "kinds": len(GENERATORS),
            "shapes": list(SHAPES),
            "per_kind": args.per_kind,
            "seed": args.seed,
        },
        "processes": 1,
    }
    samples = [(case, shape, SHAPES[shape](case.answer)) for case in cases for shape in SHAPES]
    judges = {
        "math_verify": plain_math_verify(),
        "math_verify_on_extracted_answer": math_verify_on_extracted(),
        "ours": ours(),
    }
    verdicts, seconds = run_interleaved(judges, samples, args.chunk)
    for name in judges:
        result, misses = summarize(samples, verdicts[name], seconds[name])
        result["misses"] = _miss_rows(misses, args.show_misses)
        result["miss_count"] = len(misses)
        report[name] = result
    report["speedup_vs_math_verify"] = round(
        report["ours"]["samples_per_s"] / report["math_verify"]["samples_per_s"], 2
    )
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
