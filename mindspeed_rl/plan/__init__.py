"""Predict a GRPO run's per-device memory before it starts (``cli/plan.py``).

:mod:`~mindspeed_rl.plan.memory` holds the model of memory (pure functions of a
:class:`PlanInput`), :mod:`~mindspeed_rl.plan.inputs` reads the typed config and the HF
config.json into one, :mod:`~mindspeed_rl.plan.report` gives the verdict, the knobs and the
tables.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mindspeed_rl.errors import UserError
from mindspeed_rl.plan.memory import GB, MemoryPlan, PlanInput, plan_memory

if TYPE_CHECKING:
    from mindspeed_rl.config.grpo import GRPOConfig

__all__ = [
    "GB",
    "MemoryPlan",
    "PlanInput",
    "check_fits",
    "plan_config",
    "plan_memory",
    "print_plan",
]


def plan_config(
    cfg: GRPOConfig, device_memory_gb: float | None = None, read_dataset: bool = True
) -> MemoryPlan:
    """The memory plan of a run (``device_memory_gb`` replaces the config's when given;
    ``read_dataset=False``: prompt lengths from the config alone)."""
    from mindspeed_rl.plan.inputs import plan_input

    return plan_memory(plan_input(cfg, device_memory_gb, read_dataset))


def check_fits(cfg: GRPOConfig, config_name: str) -> MemoryPlan | None:
    """Refuse, with one line, a run whose predicted peak exceeds
    ``resources.device_memory_gb`` (0: not checked, returns None)."""
    if cfg.resources.device_memory_gb <= 0:
        return None
    from mindspeed_rl.plan.report import refusal

    plan = plan_config(cfg)
    if not plan.fits:
        raise UserError(refusal(plan, config_name))
    return plan


def print_plan(cfg: GRPOConfig, config_name: str, device_memory_gb: float | None = None) -> int:
    """Print the plan of ``cfg`` (``cli/plan.py``, ``train_grpo.py --plan``); the exit status:
    0 when it fits or no device size is known, 2 when it does not."""
    from mindspeed_rl.errors import EXIT_USER_ERROR
    from mindspeed_rl.plan.report import render_text

    if device_memory_gb is not None and not 0 <= device_memory_gb < math.inf:
        raise UserError(
            f"--device-memory-gb must be a finite number >= 0, got {device_memory_gb:g}"
        )
    plan = plan_config(cfg, device_memory_gb)
    print(render_text(plan, config_name), end="")
    return 0 if plan.fits else EXIT_USER_ERROR
