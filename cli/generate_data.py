"""Generate a synthetic task as JSON lines: seeded, no download.

python cli/generate_data.py countdown --rows 20000 --seed 0 --out data/raw/countdown/train.jsonl
python cli/generate_data.py arithmetic --seed 0 --out-dir data/raw/arithmetic   # train + test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, UserError, cli_entry  # noqa: E402
from mindspeed_rl.utils.fs import atomic_write_text  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_data", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    tasks = parser.add_subparsers(dest="task", required=True)

    countdown = tasks.add_parser("countdown", help="Countdown puzzles (nums, target, solution)")
    countdown.add_argument("--out", type=Path, required=True, help="output .jsonl file")
    countdown.add_argument("--rows", type=int, default=20000)
    countdown.add_argument("--seed", type=int, default=0)
    countdown.add_argument("--min-numbers", type=int, default=3)
    countdown.add_argument("--max-numbers", type=int, default=4)
    countdown.add_argument("--max-number", type=int, default=99, help="numbers are 1..N")
    countdown.add_argument("--max-target", type=int, default=999, help="targets are 1..N")

    arith = tasks.add_parser("arithmetic", help="'What is a + b?' questions, train and test")
    arith.add_argument("--out-dir", type=Path, required=True, help="writes train/test.jsonl")
    arith.add_argument("--seed", type=int, default=0)
    arith.add_argument("--ops", default="+-", help="operators to use, any of +-")
    arith.add_argument("--first", default="10:99", help="range of the first operand, MIN:MAX")
    arith.add_argument("--second", default="1:9", help="range of the second operand, MIN:MAX")
    arith.add_argument("--test-rows", type=int, default=200, help="held-out questions")
    return parser


def _range(text: str, flag: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"{flag}: expected MIN:MAX integers, got {text!r}") from None
    return low, high


def write_jsonl(rows: list[dict], out: Path) -> None:
    """Write ``rows`` to ``out`` whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))


def countdown(args: argparse.Namespace) -> None:
    from mindspeed_rl.data.countdown import CountdownConfig, generate_countdown

    config = CountdownConfig(
        rows=args.rows,
        seed=args.seed,
        min_numbers=args.min_numbers,
        max_numbers=args.max_numbers,
        max_number=args.max_number,
        max_target=args.max_target,
    )
    rows = generate_countdown(config)
    write_jsonl(rows, args.out)
    print(f"generate_data: {len(rows)} countdown puzzles (seed {args.seed}) -> {args.out}")


def arithmetic(args: argparse.Namespace) -> None:
    from mindspeed_rl.data.arithmetic import ArithmeticConfig, generate_arithmetic

    (first_min, first_max), (second_min, second_max) = (
        _range(args.first, "--first"),
        _range(args.second, "--second"),
    )
    config = ArithmeticConfig(
        seed=args.seed,
        ops=args.ops,
        first_min=first_min,
        first_max=first_max,
        second_min=second_min,
        second_max=second_max,
        test_rows=args.test_rows,
    )
    train, test = generate_arithmetic(config)
    write_jsonl(test, args.out_dir / "test.jsonl")
    write_jsonl(train, args.out_dir / "train.jsonl")
    print(
        f"generate_data: {len(train)} train + {len(test)} test arithmetic questions "
        f"(seed {args.seed}) -> {args.out_dir}"
    )


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"countdown": countdown, "arithmetic": arithmetic}[args.task](args)
    except ValueError as err:
        raise UserError(str(err)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
