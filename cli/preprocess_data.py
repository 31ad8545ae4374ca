"""Preprocess a dataset into R1 prompts (Megatron indexed dataset + summary).

python cli/preprocess_data.py NAME [key=value ...]

NAME is configs/datasets/NAME.yaml (arithmetic, aime24, countdown, deepscaler, gpqa_diamond,
gsm8k, math, math500) or a path to a YAML file; overrides replace its keys, e.g.
input=/data/train.parquet output_prefix=data/x/train tokenizer=models/Qwen2.5-7B
template=qwen_r1 workers=4 map_keys.problem=prompt limit=100 skip_bad_rows=true.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, cli_entry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preprocess_data",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("name", help="dataset config name or path to a .yaml file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here, not at the top: tokenizer workers are spawned processes that re-import
    # this script, and should not pay for importing megatron-core and torch.
    from mindspeed_rl.data.preprocess import load_dataset_config, preprocess

    config = load_dataset_config(args.name, args.overrides)
    start = time.time()
    summary = preprocess(config, progress=not args.quiet)
    dropped = summary["rows_dropped"]
    print(
        f"preprocess_data: {summary['rows_kept']} of {summary['rows_read']} rows kept "
        f"({dropped['bad_row']} bad, {dropped['too_long']} too long) in {time.time() - start:.1f} s"
        f" -> {summary['output_prefix']}_prompt/_label (.bin/.idx)"
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
