"""Named evaluation suites: the sets a report's table is made of, each with its own samples per
prompt and the figure its column shows.

    python cli/eval.py --model A --model B --suite r1zero      # one row per model

``r1zero`` is the DeepSeek-R1-Zero report's table: MATH-500 pass@1, AIME 2024 avg@24 and
GPQA Diamond avg@4 (avg@k: the mean accuracy of k samples at the sampling temperature; the
report's "Pass@1 with k samples"). ``math`` is every named math set: GSM8K and MATH-500
pass@1 (greedy), AMC 2023, AIME 2024 and AIME 2025 avg@16 (16 samples per problem, as
DeepScaleR reports its small sets). Each set is a preprocessed ``data/<name>/test`` made from
a file the user brings (no download at run time; GSM8K's test split ships), e.g.

    bash examples/data/preprocess_data.sh math500 input=/data/MATH-500/test.jsonl
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mindspeed_rl.errors import UserError


@dataclass(frozen=True)
class SuiteSet:
    """One column of a suite's table."""

    column: str
    """The column's title (the set and its figure)."""
    data: str
    """The dataset name: ``data/<data>/test`` when preprocessed."""
    n: int
    """Samples per prompt besides the greedy one (1: greedy only)."""
    metric: str
    """The figure shown: a key of :func:`mindspeed_rl.eval.run.metrics_of`'s output."""

    @property
    def ks(self) -> list[int]:
        return [self.n] if self.n > 1 else []


SUITES: dict[str, tuple[SuiteSet, ...]] = {
    "r1zero": (
        SuiteSet("MATH-500 pass@1", "math500", 1, "greedy_pass@1"),
        SuiteSet("AIME24 avg@24", "aime24", 24, "avg@24"),
        SuiteSet("GPQA Diamond avg@4", "gpqa_diamond", 4, "avg@4"),
    ),
    "math": (
        SuiteSet("GSM8K pass@1", "gsm8k", 1, "greedy_pass@1"),
        SuiteSet("MATH-500 pass@1", "math500", 1, "greedy_pass@1"),
        SuiteSet("AMC23 avg@16", "amc23", 16, "avg@16"),
        SuiteSet("AIME24 avg@16", "aime24", 16, "avg@16"),
        SuiteSet("AIME25 avg@16", "aime25", 16, "avg@16"),
    ),
}


def get_suite(name: str) -> tuple[SuiteSet, ...]:
    if name not in SUITES:
        raise UserError(f"--suite: unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]


def parse_suite_data(pairs: list[str], suite: tuple[SuiteSet, ...] | None) -> dict[str, str]:
    """``--suite-data NAME=PREFIX`` pairs as {set name: prefix}."""
    if pairs and suite is None:
        raise UserError("--suite-data needs --suite")
    names = {s.data for s in suite or ()}
    out = {}
    for pair in pairs:
        name, sep, prefix = pair.partition("=")
        if not sep or not prefix:
            raise UserError(f"--suite-data {pair!r}: expected NAME=PREFIX")
        if name not in names:
            raise UserError(
                f"--suite-data: the suite has no set {name!r}; its sets: {', '.join(sorted(names))}"
            )
        out[name] = prefix
    return out


def checkpoint_models(checkpoints: Path, every: int) -> list[tuple[Path, int]]:
    """(checkpoints folder, iteration) for every complete checkpoint (the trainer's sense:
    its trainer state is there) whose iteration is a multiple of ``every``, oldest first (``--model runs/X/checkpoints --every 200``)."""
    from mindspeed_rl.driver.grpo import complete_checkpoints

    iterations = sorted(complete_checkpoints(checkpoints))
    chosen = [(checkpoints, i) for i in iterations if i % every == 0]
    if not chosen:
        raise UserError(
            f"--every {every}: {checkpoints} has no checkpoint at a multiple of {every} "
            f"(iterations: {', '.join(map(str, iterations)) or 'none'})"
        )
    return chosen


def markdown_table(columns: list[str], rows: dict[str, dict[str, float | None]]) -> str:
    """One row per model, one column per set; ``-`` where a figure is missing."""
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for model, figures in rows.items():
        cells = [f"{figures[c]:.3f}" if figures.get(c) is not None else "-" for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
