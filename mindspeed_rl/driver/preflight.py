"""``train_grpo.py --preflight``: a preset's real layout through every phase in minutes.

Two short iterations on the preset's ranks, devices, parallel layout and engines (build,
weight sync and wake-up, rollout, sleep, log-probs, update), a checkpoint save after the first
and a resume of that save (the training state after loading must equal the state saved), with
the time and the measured peak memory of each phase printed next to what ``plan`` predicts for
that phase. It exits non-zero on any failure, and when a measured peak exceeds
``resources.device_memory_gb``. Batch and response length are cut down (keys given on the
command line are kept), so activations and KV use are smaller than in the run; weights,
gradients, optimizer state and vLLM's own pools are the run's.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.config.grpo import GRPOConfig, resolve
from mindspeed_rl.driver.metrics import duration
from mindspeed_rl.errors import UserError
from mindspeed_rl.utils.console import shown

ITERATIONS = 2
MAX_TOKENS = 32
ITERATION_PHASES = ("sync", "rollout", "reward", "to_train", "logprobs", "update")
ONCE_PHASES = ("save", "resume")
PLAN_PHASE = {"sync": "rollout", "rollout": "rollout", "reward": "rollout",
              "to_train": "training", "logprobs": "training", "update": "training",
              "save": "training", "resume": "training"}  # fmt: skip
"""The plan phase whose prediction a measured phase is shown next to (the engines hold their
weights and KV cache from the sync until they sleep in to_train)."""


def _user_keys(overrides: list[str]) -> set[str]:
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def preflight_config(cfg: GRPOConfig, overrides: list[str]) -> GRPOConfig:
    """``cfg`` cut down to a preflight: 2 iterations, the fewest prompts per iteration the
    layout accepts (as many mini-batches per iteration as the run has), responses of at most
    32 tokens, no validation or export, output under ``<output_dir>/preflight``. Keys the user
    set in ``overrides`` keep their values."""
    user = _user_keys(overrides)
    c = copy.deepcopy(cfg)
    c.trainer.iterations = ITERATIONS
    c.trainer.val_interval = 0
    c.trainer.save_interval = 0
    c.trainer.export_hf = False
    c.trainer.resume = "never"
    c.trainer.output_dir = str(Path(cfg.trainer.output_dir) / "preflight")
    c.logging.dir = c.trainer.output_dir
    c.logging.tensorboard = False
    if "sampling.max_tokens" not in user:
        c.sampling.max_tokens = min(cfg.sampling.max_tokens, MAX_TOKENS)
    if "data.prompts_per_iteration" not in user:
        keep_mini = "trainer.mini_batch_size" in user
        samples = cfg.samples_per_iteration
        steps = samples // (cfg.trainer.mini_batch_size or samples)
        for prompts in range(1, cfg.data.prompts_per_iteration + 1):
            c.data.prompts_per_iteration = prompts
            if not keep_mini:
                if (prompts * cfg.sampling.n) % steps:
                    continue
                c.trainer.mini_batch_size = 0 if steps == 1 else prompts * cfg.sampling.n // steps
            try:
                c.validate(check_files=False)
            except UserError:
                continue
            break
        else:  # the run's own batch is the smallest the layout accepts
            c.data.prompts_per_iteration = cfg.data.prompts_per_iteration
            c.trainer.mini_batch_size = cfg.trainer.mini_batch_size
    return c


@dataclass
class PhaseRow:
    name: str
    seconds: list[float] = field(default_factory=list)
    peak: int = 0
    """Highest memory in use on any rank during the phase, over its runs (bytes)."""


class PreflightReport:
    """Per phase: seconds in each run, the highest measured memory of any rank, and the plan's
    prediction for this batch and for the run."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows: dict[str, PhaseRow] = {}

    def add(self, phase: str, seconds: float, peak: int) -> None:
        row = self.rows.setdefault(phase, PhaseRow(phase))
        row.seconds.append(seconds)
        row.peak = max(row.peak, peak)

    @property
    def peak(self) -> PhaseRow:
        return max(self.rows.values(), key=lambda r: r.peak)

    def lines(self, plans: dict[str, dict[str, float]]) -> list[str]:
        """The table; ``plans``: {"this batch" | "the run": {plan phase: bytes}}."""
        memory = "host RSS" if self.kind == "cpu" else "device used"
        head = (f"  {'phase':<9} {'seconds':>15}  {'peak ' + memory + ' (max rank)':>26}"
                + "".join(f"  {'plan, ' + name:>18}" for name in plans))  # fmt: skip
        out = [head]
        for row in self.rows.values():
            secs = " / ".join(f"{s:.1f}" for s in row.seconds)
            phase = PLAN_PHASE.get(row.name)
            planned = "".join(
                f"  {(_gb(p[phase]) + ' ' + phase) if phase else '-':>18}" for p in plans.values()
            )
            out.append(f"  {row.name:<9} {secs:>15}  {_gb(row.peak):>26}{planned}")
        return out


def check_resumed(saved: list[list[float]], loaded: list[list[float]]) -> None:
    """Refuse a resume whose loaded training state (per-rank digests) is not the one saved."""
    bad = [rank for rank, (a, b) in enumerate(zip(saved, loaded)) if a != b]
    if bad:
        raise RuntimeError(
            f"resume: the training state of rank(s) {bad} after loading the save differs from "
            f"the state saved (digest {saved[bad[0]]} vs {loaded[bad[0]]})"
        )


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB"


def _plan_bytes(cfg: GRPOConfig) -> dict[str, float]:
    from mindspeed_rl.plan import plan_config

    return {p.name: p.peak for p in plan_config(cfg).phases}


def run_preflight(
    run_cfg: GRPOConfig, cfg: GRPOConfig, config_name: str, console: TextIO
) -> PreflightReport:
    """Run the preflight of ``run_cfg`` (cut down to ``cfg`` by :func:`preflight_config`),
    printing its lines to ``console``. Raises on the first failing phase (after naming it),
    and a :class:`UserError` when measured memory exceeds the device."""
    from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
    from mindspeed_rl.driver.grpo import (
        TRAINER_STATE,
        Timer,
        get_kind,
        layout_text,
        prepare_initial_checkpoint,
        ranks_text,
        resolved,
        save_checkpoint,
        train_step,
    )
    from mindspeed_rl.plan import GB
    from mindspeed_rl.workers.group import WorkerGroup

    began = time.perf_counter()

    def say(line: str) -> None:
        print(line, file=console, flush=True)

    cfg = resolved(cfg)
    out = resolve(cfg.trainer.output_dir)
    ckpt_root = out / "checkpoints"
    shutil.rmtree(ckpt_root, ignore_errors=True)
    ckpt_root.mkdir(parents=True)
    # The run's own starting checkpoint (converted from HF there on first use, so the run
    # that follows reuses it).
    load_dir = prepare_initial_checkpoint(cfg, resolve(run_cfg.trainer.output_dir))
    shutil.copytree(load_dir / mf.HF_META_DIR, ckpt_root / mf.HF_META_DIR)
    loader = PromptLoader(PromptLoaderConfig(
        data_prefix=str(resolve(cfg.data.train_prefix)),
        batch_size=cfg.data.prompts_per_iteration, seed=cfg.data.seed,
    ))  # fmt: skip
    say(f"preflight: {config_name}: {ranks_text(cfg)}: {layout_text(cfg)}; {ITERATIONS} "
        f"iterations x {cfg.data.prompts_per_iteration} prompts x {cfg.sampling.n} samples, "
        f"responses <= {cfg.sampling.max_tokens} tokens; a save and its resume")  # fmt: skip
    kind = get_kind(cfg)
    report = PreflightReport(kind)
    t = Timer()
    try:
        with t("build"):
            group = WorkerGroup(cfg, load_dir, ckpt_root / mf.HF_META_DIR)
        try:
            report.add("build", t.seconds["build"], group.start_memory_probe())
            say(f"  build {t.seconds['build']:.1f} s ({len(group.placement)} ranks)")
            for iteration in range(1, ITERATIONS + 1):
                t = Timer()
                t.on_end = lambda phase, t=t: report.add(
                    phase, t.seconds[phase], group.memory_peak()
                )
                train_step(group, loader, cfg, iteration, t)
                if iteration == 1:
                    with t("save"):
                        save_checkpoint(group, ckpt_root, 1, loader)
                        saved = group.digests()
                    with t("resume"):
                        state = json.loads(
                            (ckpt_root / mf.iter_dir_name(1) / TRAINER_STATE).read_text()
                        )
                        group.load(ckpt_root, 1)
                        loader.load_state_dict(state["loader"])
                        check_resumed(saved, group.digests())
                say(f"  iteration {iteration}: "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in t.seconds.items()))  # fmt: skip
        finally:
            group.shutdown()
    except BaseException:
        if report.rows:  # what passed before the failure, without the plan's columns
            for line in report.lines({}):
                say(line)
        say(f"preflight: FAILED in phase {t.current or 'set-up'}")
        raise
    plans = {"this batch": _plan_bytes(cfg), "the run": _plan_bytes(run_cfg)}
    for line in report.lines(plans):
        say(line)
    shutil.rmtree(ckpt_root, ignore_errors=True)
    peak = report.peak
    res = cfg.resources
    budget = res.device_memory_gb * GB
    if budget > 0 and peak.peak > budget:
        raise UserError(
            f"preflight: {peak.name} used {_gb(peak.peak)} on one rank, over "
            f"resources.device_memory_gb={res.device_memory_gb:g}; see "
            f"python cli/plan.py --config-name {config_name} for the knobs that lower it"
        )
    note = (" (host RSS counts the libraries and vLLM's CPU KV cache; plan counts model "
            "state, activations and KV)" if kind == "cpu" else "")  # fmt: skip
    say(
        f"preflight: OK in {duration(time.perf_counter() - began)}; peak {_gb(peak.peak)} "
        f"per rank in {peak.name}{note}; logs in {shown(out / 'logs')}/"
    )
    return report
