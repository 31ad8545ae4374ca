"""Generate Countdown puzzles (nums, target, solution) as JSON lines; seeded, no download.

python cli/generate_countdown.py --rows 20000 --seed 0 --out data/raw/countdown/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import UserError, cli_entry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_countdown", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output .jsonl file")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-numbers", type=int, default=3)
    parser.add_argument("--max-numbers", type=int, default=4)
    parser.add_argument("--max-number", type=int, default=99, help="numbers are 1..max-number")
    parser.add_argument("--max-target", type=int, default=999, help="targets are 1..max-target")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mindspeed_rl.data.countdown import CountdownConfig, generate_countdown

    try:
        config = CountdownConfig(
            rows=args.rows,
            seed=args.seed,
            min_numbers=args.min_numbers,
            max_numbers=args.max_numbers,
            max_number=args.max_number,
            max_target=args.max_target,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    rows = generate_countdown(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    with temp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(temp, args.out)
    print(f"generate_countdown: {len(rows)} puzzles (seed {args.seed}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
