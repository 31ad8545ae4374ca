"""Where and how a run's metrics are recorded (read by :mod:`mindspeed_rl.driver.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoggingConfig:
    """Where and how per-iteration metrics are recorded."""

    dir: str = "runs/grpo"
    """Run directory: metrics.jsonl, tensorboard/ and swanlog/ are written under it."""
    tensorboard: bool = True
    """Write TensorBoard scalars to <dir>/tensorboard (skipped with a warning when the
    tensorboard package is not installed)."""
    swanlab: bool = False
    """Also log to SwanLab, offline, under <dir>/swanlog (needs the swanlab package;
    upload later with ``swanlab sync``)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package; WANDB_MODE=offline for
    machines without network)."""
    project: str = "mindspeed-rl"
    """Project name for SwanLab / wandb."""
    experiment: str = "grpo"
    """Experiment (run) name for SwanLab / wandb."""
    console: bool = True
    """Show a progress bar with the key figures (a plain line per iteration when the console
    is not a terminal)."""
    verbose: bool = False
    """Show what the libraries print (vLLM, megatron-core, Ray, transformers) on the console
    too; by default it goes to <trainer.output_dir>/logs/ only (``train_grpo.py --verbose``)."""

    def __post_init__(self) -> None:
        if not str(self.dir).strip():
            raise ValueError("logging.dir is empty; give the run directory, e.g. runs/r1-zero")
        for key in ("tensorboard", "swanlab", "wandb", "console", "verbose"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"logging.{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("project", "experiment"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise ValueError(
                    f"logging.{key} must be a non-empty name, got {getattr(self, key)!r}"
                )
