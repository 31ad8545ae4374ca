"""Score a file of generations with the rule scorers and print the accuracy.

python cli/score.py --input gens.jsonl --scorer math [--scorer format=0.1]
                    [--response-key response] [--answer-key label] [--output scores.jsonl]

Each input line is a JSON object with the response text and its ground truth. The printed
accuracy is the mean score of the first scorer named; --output gets one line per input row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, UserError, cli_entry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="score",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--input", type=Path, required=True, help="generations, .jsonl")
    parser.add_argument(
        "--scorer",
        action="append",
        required=True,
        metavar="NAME[=WEIGHT]",
        help="math, format, format_lenient, gsm8k, countdown or module:function; repeatable",
    )
    parser.add_argument("--response-key", default="response", help="key of the response text")
    parser.add_argument("--answer-key", default="label", help="key of the ground truth")
    parser.add_argument("--output", type=Path, help="per-row scores, .jsonl")
    parser.add_argument("--workers", type=int, default=2, help="scorer processes")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per sample")
    return parser


def parse_scorers(specs: list[str]) -> dict[str, float]:
    """``["math", "format=0.1"]`` -> ``{"math": 1.0, "format": 0.1}``."""
    scorers = {}
    for spec in specs:
        name, sep, weight = spec.partition("=")
        try:
            scorers[name] = float(weight) if sep else 1.0
        except ValueError:
            raise UserError(f"--scorer {spec}: weight {weight!r} is not a number") from None
    return scorers


def read_generations(path: Path, response_key: str, answer_key: str) -> list[tuple[str, str]]:
    """``(response, label)`` of every line; a bad line is an error naming it."""
    if not path.is_file():
        raise UserError(f"{path}: input file not found")
    rows = []
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{where}: not valid UTF-8; re-encode the file") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: invalid JSON at column {err.colno}: {err.msg}") from None
            if not isinstance(row, dict):
                raise UserError(f"{where}: expected a JSON object")
            for key, flag in ((response_key, "--response-key"), (answer_key, "--answer-key")):
                if key not in row:
                    raise UserError(f"{where}: no key {key!r}; name the right one with {flag}")
            response, label = row[response_key], row[answer_key]
            if not isinstance(response, str):
                raise UserError(f"{where}: {response_key!r} must be text")
            rows.append((response, label if isinstance(label, str) else json.dumps(label)))
    if not rows:
        raise UserError(f"{path}: no rows to score")
    return rows


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mindspeed_rl.rewards import RewardConfig, RewardScorer

    if args.output is not None and args.output.is_dir():
        raise UserError(f"--output {args.output} is a folder; name the JSONL file to write")

    try:
        config = RewardConfig(
            scorers=parse_scorers(args.scorer), timeout_s=args.timeout, workers=args.workers
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    rows = read_generations(args.input, args.response_key, args.answer_key)
    start = time.time()
    with RewardScorer(config) as scorer:
        results = scorer.score_batch([r for r, _ in rows], [lab for _, lab in rows])
    seconds = time.time() - start
    names = list(config.scorers)
    means = {n: sum(r.parts[n] for r in results) / len(results) for n in names}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        temp = args.output.with_name(f".{args.output.name}.tmp-{os.getpid()}")
        with temp.open("w", encoding="utf-8") as f:
            for result in results:
                row = {"total": result.total, "parts": result.parts, "reasons": result.reasons}
                f.write(json.dumps(row) + "\n")
        os.replace(temp, args.output)
    summary = {
        "input": str(args.input),
        "rows": len(results),
        "accuracy": means[config.accuracy_scorer],
        "mean_total": sum(r.total for r in results) / len(results),
        "mean_parts": means,
        "timeouts": sum(reason == "timeout" for r in results for reason in r.reasons.values()),
        "seconds": round(seconds, 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
