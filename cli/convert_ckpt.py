"""Convert checkpoints between Hugging Face and Megatron-LM layouts.

python cli/convert_ckpt.py hf2mcore --load-dir HF_DIR --save-dir OUT --tp 2 --pp 2
python cli/convert_ckpt.py mcore2hf --load-dir OUT --save-dir HF_OUT
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, cli_entry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_ckpt", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="direction", required=True)
    to_mcore = sub.add_parser("hf2mcore", help="HF safetensors -> Megatron TP/PP shards")
    to_mcore.add_argument("--load-dir", type=Path, required=True, help="HF model directory")
    to_mcore.add_argument("--save-dir", type=Path, required=True, help="Megatron output dir")
    to_mcore.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    to_mcore.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    to_mcore.add_argument(
        "--params-dtype",
        choices=["fp32", "bf16", "fp16"],
        default=None,
        help="cast weights to this dtype (default: keep the HF checkpoint's dtype)",
    )
    to_mcore.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    to_mcore.add_argument("--overwrite", action="store_true", help="replace a non-empty --save-dir")
    to_hf = sub.add_parser("mcore2hf", help="Megatron shards (any TP/PP) -> HF safetensors")
    to_hf.add_argument("--load-dir", type=Path, required=True, help="Megatron checkpoint dir")
    to_hf.add_argument("--save-dir", type=Path, required=True, help="HF output directory")
    to_hf.add_argument("--max-shard-size-mb", type=int, default=2048)
    to_hf.add_argument("--overwrite", action="store_true", help="replace a non-empty --save-dir")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mindspeed_rl.checkpoint.convert import hf_to_mcore, mcore_to_hf

    start = time.time()
    if args.direction == "hf2mcore":
        meta = hf_to_mcore(
            args.load_dir,
            args.save_dir,
            tp=args.tp,
            pp=args.pp,
            params_dtype=args.params_dtype,
            make_vocab_size_divisible_by=args.make_vocab_size_divisible_by,
            overwrite=args.overwrite,
        )
    else:
        meta = mcore_to_hf(
            args.load_dir,
            args.save_dir,
            max_shard_bytes=args.max_shard_size_mb * 1024**2,
            overwrite=args.overwrite,
        )
    print(
        f"convert_ckpt: {args.direction} {meta.spec.family} TP={meta.tp} PP={meta.pp} "
        f"{meta.params_dtype} -> {args.save_dir} ({time.time() - start:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
