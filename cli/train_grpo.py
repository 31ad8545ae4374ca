"""Train a policy with GRPO (and DAPO / Dr.GRPO variants) on Ray.

    python cli/train_grpo.py --config-name grpo_smollm2_cpu [key=value ...]

Overrides use Hydra syntax, e.g. trainer.iterations=3 sampling.n=4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import cli_entry  # noqa: E402


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_grpo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-name", required=True, help="a preset in configs/, e.g. grpo_smollm2_cpu"
    )
    parser.add_argument("--config-path", help="directory of the preset (default: configs/)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--plan", action="store_true", help="print the predicted per-device memory and exit"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    args = parser.parse_args(argv)
    from mindspeed_rl.config.grpo import load_config
    from mindspeed_rl.plan import check_fits, print_plan

    cfg = load_config(args.config_name, args.overrides, args.config_path)
    if args.plan:
        cfg.validate(check_files=False)
        return print_plan(cfg, args.config_name)
    cfg.validate(check_files=True)
    check_fits(cfg, args.config_name)  # refuses a layout predicted not to fit the devices
    if args.check:
        print(f"train_grpo: {args.config_name} is valid")
        return 0
    from mindspeed_rl.trainer.grpo import train

    metrics = train(cfg)
    summary = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("reward/", "val/"))}
    print(f"train_grpo: done {cfg.trainer.output_dir} {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
