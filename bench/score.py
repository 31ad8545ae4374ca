"""Throughput of the math scorer on typical R1-style outputs, through the process pool.

python bench/score.py [--samples 4000] [--workers 2] [--group 8]

Prints JSON with samples/s. "Typical" here: a few hundred characters of reasoning, then the
final answer in <answer> tags (bare, boxed) or in a \\boxed{} alone; competition-math labels
(integers, fractions, radicals, tuples, intervals, expressions); G responses per label as in
GRPO, about half of them right, in the spellings models use. Half the labels are integers
(as in MATH); the rest fractions, radicals, points, intervals, polynomials, percentages, all
with random values so that no cache across groups flatters the figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.rewards import RewardConfig, RewardScorer  # noqa: E402


def _answer_kinds(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A random competition-style label, its right spellings and wrong answers. Values are
    random so that math-verify's small parse caches do not flatter the figure."""
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(1, 9)
    kind = rng.randrange(12)
    if kind >= 7:  # integers: about half of MATH's answers and all of GSM8K's
        n = rng.randint(-50, 5000)
        return str(n), [str(n), f"{n}.0", f"x = {n}"], [str(n + c), str(n * 10)]
    if kind == 2:
        return (
            f"\\frac{{{a}}}{{{a + c}}}",
            [f"\\dfrac{{{a}}}{{{a + c}}}", f"{a}/{a + c}"],
            [f"\\frac{{{a + c}}}{{{a}}}"],
        )
    if kind == 3:
        return (
            f"{c}\\sqrt{{{b}}}",
            [f"{c} \\sqrt{{{b}}}", f"{c}\\sqrt {b}"],
            [f"{c + 1}\\sqrt{{{b}}}"],
        )
    if kind == 4:
        return (
            f"\\left( {c}, \\frac{{\\pi}}{{{b}}} \\right)",
            [f"({c}, \\frac{{\\pi}}{{{b}}})", f"\\left({c},\\dfrac{{\\pi}}{{{b}}}\\right)"],
            [f"({c + 1}, \\frac{{\\pi}}{{{b}}})"],
        )
    if kind == 5:
        return f"[-{c},{a}]", [f"[-{c}, {a}]"], [f"(-{c}, {a})", f"[-{c}, {a + 1}]"]
    if kind == 6:
        return f"x^2+{a}x+{b}", [f"x^2 + {a}x + {b}"], [f"x^2+{a}x+{b + c}"]
    return f"{a}\\%", [f"{a}\\%", str(a)], [f"{a + c}\\%"]


REASONING = (
    "Let me work through this carefully. First, I set up the equation from the problem "
    "statement and simplify both sides. Substituting the known values gives a linear relation, "
    "and solving it step by step yields a candidate value. I check it against the constraints: "
    "it satisfies all of them, so this is the value we need. "
)


def make_samples(count: int, group: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` responses and labels, ``group`` responses per label."""
    rng = random.Random(seed)
    responses, labels = [], []
    while len(responses) < count:
        label, rights, wrongs = _answer_kinds(rng)
        for _ in range(group):
            answer = rng.choice(rights if rng.random() < 0.5 else wrongs)
            reasoning = REASONING * rng.randint(1, 4)
            form = rng.randrange(3)
            if form == 0:
                response = f"<think>{reasoning}</think> <answer>{answer}</answer>"
            elif form == 1:
                response = f"<think>{reasoning}</think> <answer>\\boxed{{{answer}}}</answer>"
            else:
                response = f"{reasoning} The answer is $\\boxed{{{answer}}}$."
            responses.append(response)
            labels.append(label)
    return responses[:count], labels[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--group", type=int, default=8, help="responses per label (GRPO G)")
    parser.add_argument("--batch", type=int, default=512, help="samples per score_batch call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    responses, labels = make_samples(args.samples, args.group, args.seed)
    config = RewardConfig(scorers={"math": 1.0}, timeout_s=5.0, workers=args.workers)
    with RewardScorer(config) as scorer:
        scorer.score_batch(responses[:64], labels[:64])  # start the workers outside the clock
        start = time.perf_counter()
        results = []
        for i in range(0, len(responses), args.batch):
            end = i + args.batch
            results += scorer.score_batch(responses[i:end], labels[i:end])
        seconds = time.perf_counter() - start
        restarts = scorer.restarts
    print(
        json.dumps(
            {
                "scorer": "math",
                "samples": len(results),
                "workers": args.workers,
                "seconds": round(seconds, 3),
                "samples_per_s": round(len(results) / seconds, 1),
                "accuracy": round(sum(r.total for r in results) / len(results), 3),
                "timeouts": sum(r.reasons["math"] == "timeout" for r in results),
                "restarts": restarts,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
