"""Predict the per-device memory of a GRPO run before it starts, and say whether it fits.

    python cli/plan.py --config-name grpo_qwen25_7b [--device-memory-gb 64] [key=value ...]

Prints, for the worst device, what training and rollout hold (parameters, gradients,
optimizer state, activations, logits, vLLM weights and KV cache, what is offloaded), the
peak, a verdict, and the knobs that would make a run that does not fit fit. Exit status: 0
when it fits (or no device size is known), 2 when it does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, cli_entry  # noqa: E402


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plan", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--config-name", required=True, help="a preset in configs/, e.g. grpo_qwen25_7b"
    )
    parser.add_argument("--config-path", help="directory of the preset (default: configs/)")
    parser.add_argument(
        "--device-memory-gb",
        type=float,
        help="memory of one device in GB (default: resources.device_memory_gb)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    args = parser.parse_args(argv)
    from mindspeed_rl.config.grpo import load_config
    from mindspeed_rl.plan import print_plan

    cfg = load_config(args.config_name, args.overrides, args.config_path)
    cfg.validate(check_files=False)
    return print_plan(cfg, args.config_name, args.device_memory_gb)


if __name__ == "__main__":
    sys.exit(main())
