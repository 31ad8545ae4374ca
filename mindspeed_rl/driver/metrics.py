"""Per-iteration metrics: a JSONL file, TensorBoard, optional SwanLab / wandb, a console bar.

    with MetricsLogger(LoggingConfig(dir="runs/r1"), total_iterations=500) as metrics:
        for iteration in range(1, 501):
            ...
            metrics.log(iteration, {REWARD_MEAN: 0.41, ACTOR_KL: 1e-3, TIMING_STEP: 38.2})

``<dir>/metrics.jsonl`` is the record of a run: one JSON object per line, ``{"iteration": 12,
"time": <unix seconds>, "reward/mean": 0.41, ...}``, flushed and fsynced line by line so a
killed run keeps everything it logged. Non-finite values are written as ``null`` so the file
stays strict JSON. ``cli/plot_metrics.py`` turns it into curves.

Create the logger on one process only (the driver, or rank 0).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from tqdm import tqdm

from mindspeed_rl.config.logging import LoggingConfig
from mindspeed_rl.errors import UserError

log = logging.getLogger(__name__)

# Metric names the trainer emits. Parts of the reward go under reward/<part>, timings of the
# phases under timing/<phase>; the constants below are the ones other code refers to.
REWARD_MEAN = "reward/mean"
REWARD_ACCURACY = "reward/accuracy"
REWARD_FORMAT = "reward/format"
RESPONSE_LENGTH_MEAN = "response_length/mean"
RESPONSE_LENGTH_MAX = "response_length/max"
RESPONSE_LENGTH_CLIP_RATIO = "response_length/clip_ratio"
"""Fraction of responses cut off at the maximum response length."""
ACTOR_KL = "actor/kl"
ACTOR_CLIP_FRAC = "actor/clip_frac"
ACTOR_ENTROPY = "actor/entropy"
ACTOR_GRAD_NORM = "actor/grad_norm"
ACTOR_LOSS = "actor/loss"
ACTOR_LR = "actor/lr"
ACTOR_PG_LOSS = "actor/pg_loss"
ASYNC_STALENESS_MEAN = "async/staleness_mean"
"""Policy versions the batch's samples lag the policy they update (0 on-policy)."""
ASYNC_STALENESS_MAX = "async/staleness_max"
TIMING_STEP = "timing/step"
"""Wall-clock seconds of the whole iteration (the console's s/it)."""
PERF_TOKENS_PER_S = "perf/tokens_per_s"
ROLLOUT_NLL = "rollout/nll"
"""Token-mean negative log-prob of the sampled tokens by the inference engine."""
VAL_ACCURACY = "val/accuracy"
"""pass@1 on the validation set."""
VAL_AVG_AT_K = "val/avg_at_k"
VAL_PASS_AT_K = "val/pass_at_k"
VAL_FORMAT = "val/format"
"""The format scorer's mean on the validation set."""

METRICS_FILE = "metrics.jsonl"


def reward_part(part: str) -> str:
    """The metric name of one reward part, e.g. ``reward/format``."""
    return f"reward/{part}"


def timing(phase: str) -> str:
    """The metric name of a phase's wall-clock seconds, e.g. ``timing/rollout``."""
    return f"timing/{phase}"


def _scalar(key: str, value: Any) -> float:
    """``value`` as a float; tensors must hold one element."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"metric {key!r} must be a number, got the string {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"metric {key!r} must be a scalar, got {type(value).__name__}") from err


def _parse_line(line: str) -> dict[str, Any] | None:
    """One metrics row, or None if the line is not a JSON object with an integer iteration."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict) or type(row.get("iteration")) is not int:
        return None
    return row


def truncate_after(path: Path, iteration: int | None) -> int | None:
    """Keep only the rows of ``path`` with ``iteration`` <= the given one (all rows go when it
    is None) and any torn last line; return the last iteration kept, or None.

    A resumed run repeats the iterations after its checkpoint; their old rows must go so each
    iteration is in the file once. The file is replaced atomically.
    """
    if not path.exists():
        return None
    kept: list[str] = []
    last: int | None = None
    for line in path.read_text().splitlines():
        row = _parse_line(line)
        if row is None or iteration is None or row["iteration"] > iteration:
            continue
        kept.append(line)
        last = row["iteration"] if last is None else max(last, row["iteration"])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
    return last


def load_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics file, merged by iteration (later keys win), in iteration order.

    Raises :class:`UserError` on a missing, empty or malformed file. A torn last line (a run
    killed mid-write) is ignored.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"metrics file {path} does not exist; pass the run's metrics.jsonl")
    if not path.is_file():
        raise UserError(f"metrics file {path} is not a file; pass the run's metrics.jsonl")
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    by_iteration: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _parse_line(line)
        if row is None:
            if number == len(lines) and not text.endswith("\n"):
                continue
            raise UserError(
                f"{path}:{number} is not a JSON object with an integer 'iteration'; "
                "is this a metrics.jsonl written by the trainer?"
            )
        by_iteration.setdefault(row["iteration"], {}).update(row)
    if not by_iteration:
        raise UserError(f"metrics file {path} is empty; the run logged no iteration yet")
    return [by_iteration[i] for i in sorted(by_iteration)]


class _Sink(Protocol):
    def log(self, iteration: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _JsonlSink:
    def __init__(self, path: Path, resume_iteration: int | None) -> None:
        self.last_iteration = truncate_after(path, resume_iteration)
        self._file = path.open("a", encoding="utf-8")

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        row: dict[str, Any] = {"iteration": iteration, "time": round(time.time(), 3)}
        row.update({k: v if math.isfinite(v) else None for k, v in scalars.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        # Once per iteration (tens of seconds): cheap insurance against losing the tail
        # when the node, not just the process, goes down.
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class _TensorBoardSink:
    def __init__(self, log_dir: Path, resume_iteration: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides the events of the iterations a resumed run repeats (and, for a
        # fresh run in an old directory, all of the old run's events).
        purge_step = 0 if resume_iteration is None else resume_iteration + 1
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, global_step=iteration)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _SwanLabSink:
    def __init__(self, config: LoggingConfig, run_config: Mapping[str, Any] | None) -> None:
        import swanlab

        self._swanlab = swanlab
        swanlab.init(
            project=config.project,
            experiment_name=config.experiment,
            logdir=str(Path(config.dir) / "swanlog"),
            # offline: logged locally, synced later; "local" needs the swanlab[dashboard] extra.
            mode="offline",
            config=dict(run_config or {}),
        )

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        self._swanlab.log(scalars, step=iteration)

    def close(self) -> None:
        self._swanlab.finish()


class _WandbSink:
    def __init__(self, config: LoggingConfig, run_config: Mapping[str, Any] | None) -> None:
        import wandb

        self._run = wandb.init(
            project=config.project,
            name=config.experiment,
            dir=config.dir,
            config=dict(run_config or {}),
        )

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=iteration)

    def close(self) -> None:
        self._run.finish()


CONSOLE_FIGURES = {
    "reward": REWARD_MEAN,
    "acc": REWARD_ACCURACY,
    "fmt": REWARD_FORMAT,
    "len": RESPONSE_LENGTH_MEAN,
    "kl": ACTOR_KL,
}
"""Console label -> metric, shown when the iteration logged it."""


def duration(seconds: float) -> str:
    """``1h02m``, ``6m05s`` or ``42s``: how long, at a glance."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _ConsoleSink:
    def __init__(self, total: int | None, start: int, stream: TextIO | None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._total = total
        self._last_time = time.monotonic()
        self._step_seconds: list[float] = []
        self._bar = (
            tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=self._stream)
            if self._tty
            else None
        )

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def _print(self, iteration: int, text: str) -> None:
        if self._bar is not None:
            self.message(f"iteration {iteration}: {text}")
        else:
            total = f"/{self._total}" if self._total else ""
            self.message(f"[iteration {iteration}{total}] {text}")

    def _eta(self, iteration: int) -> float | None:
        if not self._total or not self._step_seconds or iteration >= self._total:
            return None
        # Mean of this process's steps, the first one (engine warm-up) left out once others exist.
        steps = self._step_seconds[1:] or self._step_seconds
        return sum(steps) / len(steps) * (self._total - iteration)

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        validation = {k: v for k, v in scalars.items() if k.startswith("val/")}
        if validation:
            self._print(iteration, " ".join(f"{k}={v:.4g}" for k, v in validation.items()))
        if len(validation) == len(scalars):
            return  # a validation-only row is not a training step
        now = time.monotonic()
        # The trainer's own timing of the step, else the time since the last step was logged.
        seconds = scalars.get(TIMING_STEP, now - self._last_time)
        self._last_time = now
        self._step_seconds.append(seconds)
        figures = {label: scalars[key] for label, key in CONSOLE_FIGURES.items() if key in scalars}
        figures["s/it"] = seconds
        postfix = " ".join(f"{label}={value:.4g}" for label, value in figures.items())
        eta = self._eta(iteration)
        if eta is not None:
            postfix += f" eta={duration(eta)}"
        if self._bar is None:
            self._print(iteration, postfix)
            return
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(max(0, iteration - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class MetricsLogger:
    """Writes each iteration's scalar metrics to every enabled sink.

    ``resume_iteration`` is the iteration of the checkpoint a resumed run starts from: rows
    logged after it are removed from metrics.jsonl (and hidden in TensorBoard), since the run
    will log those iterations again. None means a fresh run: an existing metrics.jsonl (from a
    run that never reached a checkpoint) starts over.
    ``run_config`` (hyperparameters) is passed to SwanLab / wandb. ``console_stream`` is where
    the console lines go (default: stderr).
    """

    def __init__(
        self,
        config: LoggingConfig,
        total_iterations: int | None = None,
        resume_iteration: int | None = None,
        run_config: Mapping[str, Any] | None = None,
        console_stream: TextIO | None = None,
    ) -> None:
        self.config = config
        run_dir = Path(config.dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        jsonl = _JsonlSink(self.path, resume_iteration)
        self._last_iteration = jsonl.last_iteration
        self._sinks: list[_Sink] = [jsonl]
        if config.tensorboard:
            try:
                self._sinks.append(_TensorBoardSink(run_dir / "tensorboard", resume_iteration))
            except ImportError:
                log.warning("tensorboard is not installed; TensorBoard logging is off")
        if config.swanlab:
            self._add_optional("swanlab", lambda: _SwanLabSink(config, run_config))
        if config.wandb:
            self._add_optional("wandb", lambda: _WandbSink(config, run_config))
        self._console: _ConsoleSink | None = None
        if config.console:
            self._console = _ConsoleSink(total_iterations, resume_iteration or 0, console_stream)
            self._sinks.append(self._console)

    def _add_optional(self, name: str, make: Callable[[], _Sink]) -> None:
        try:
            self._sinks.append(make())
        except ImportError:
            log.warning(
                "logging.%s is on but %s is not installed; %s logging is off", name, name, name
            )

    def log(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """Record one iteration's metrics (floats, ints or one-element tensors).

        Iterations must not go backwards; logging the same iteration again (e.g. validation
        after the training metrics) adds a row that readers merge with the first.
        """
        if self._last_iteration is not None and iteration < self._last_iteration:
            raise ValueError(
                f"iteration {iteration} is before the last one logged ({self._last_iteration})"
            )
        scalars = {str(key): _scalar(str(key), value) for key, value in metrics.items()}
        for sink in self._sinks:
            sink.log(iteration, scalars)
        self._last_iteration = iteration

    def message(self, text: str) -> None:
        """A line for the person watching (checkpoints, summaries), kept clear of the
        progress bar; nothing when the console is off."""
        if self._console is not None:
            self._console.message(text)

    def close(self) -> None:
        """Flush and close every sink."""
        for sink in self._sinks:
            sink.close()
        self._sinks = []

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
