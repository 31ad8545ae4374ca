"""Train a policy with GRPO (and DAPO / Dr.GRPO variants) on Ray.

    python cli/train_grpo.py --config-name grpo_smollm2_cpu [key=value ...]

Overrides use Hydra syntax, e.g. trainer.iterations=3 sampling.n=4.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, cli_entry  # noqa: E402


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train_grpo", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--config-name", required=True, help="a preset in configs/, e.g. grpo_smollm2_cpu"
    )
    parser.add_argument("--config-path", help="directory of the preset (default: configs/)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--plan", action="store_true", help="print the predicted per-device memory and exit"
    )
    parser.add_argument(
        "--preflight",
        action="store_true",
        help="run the layout for 2 short iterations (every phase, a save and its resume) and "
        "print time and memory per phase next to the plan; exit non-zero on any failure",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show what the libraries print (vLLM, megatron-core, Ray) here too, not only in "
        "<trainer.output_dir>/logs/",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    args = parser.parse_args(argv)
    from mindspeed_rl.accelerator import hide_expected_cpu_notices

    hide_expected_cpu_notices()
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
        from mindspeed_rl.driver.grpo import layout_text, ranks_text

        print(f"train_grpo: layout: {ranks_text(cfg)}: {layout_text(cfg)}")
        if not cfg.model.load_dir:
            print(f"train_grpo: model.load_dir is empty: the run converts model.hf_dir "
                  f"({cfg.model.hf_dir}) into {cfg.trainer.output_dir}/init_mcore at start-up")  # fmt: skip
        return 0
    if args.verbose:
        cfg = replace(cfg, logging=replace(cfg.logging, verbose=True))
    if args.preflight:
        from mindspeed_rl.driver.preflight import preflight_config, run_preflight

        small = preflight_config(cfg, args.overrides)
        small.validate(check_files=True)
        return run(small, args.config_name,
                   lambda c, name, console: run_preflight(cfg, c, name, console))  # fmt: skip
    return run(cfg, args.config_name)


def run(cfg, config_name: str, job=None) -> int:
    """Train (or run ``job(cfg, config_name, console)``) with the libraries' output in
    <run>/logs/driver.log (and each worker's beside it); a failure reaches the console as one
    line naming that file."""
    from mindspeed_rl.config.grpo import resolve
    from mindspeed_rl.driver.grpo import train
    from mindspeed_rl.errors import UserError
    from mindspeed_rl.utils.console import (
        DRIVER_LOG,
        captured_output,
        error_line,
        log_traceback,
        logs_dir,
        root_cause,
    )

    job = job or train
    log_file = logs_dir(resolve(cfg.trainer.output_dir)) / DRIVER_LOG
    failure: BaseException | None = None
    with captured_output(log_file, verbose=cfg.logging.verbose) as console:
        try:
            job(cfg, config_name, console)
        except Exception as err:  # noqa: BLE001  (reported on one line below, traceback logged)
            log_traceback(err)
            failure = err
    if failure is None:
        return 0
    cause = root_cause(failure)
    if isinstance(cause, UserError):  # also when a worker raised it: shown as the user's error
        raise UserError(str(cause)) from None
    where = "above" if cfg.logging.verbose else f"in {log_file.parent}/"
    print(f"train_grpo: error: {error_line(failure)} (the full traceback is {where})",
          file=sys.stderr)  # fmt: skip
    return 1


if __name__ == "__main__":
    sys.exit(main())
