"""The GRPO loop: rollout -> reward -> reference / old log-probs -> advantages -> update,
with weight sync at the start of each iteration, validation, checkpoints and export."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import torch

from mindspeed_rl.algorithms.advantages import ADVANTAGE_ESTIMATORS
from mindspeed_rl.algorithms.dapo import informative_groups, overlong_penalty
from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.config.grpo import (
    AlgorithmConfig,
    GRPOConfig,
    OptimConfig,
    TrainerConfig,
    resolve,
)
from mindspeed_rl.config.structured import to_dict
from mindspeed_rl.data.indexed import PromptDataset
from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
from mindspeed_rl.driver.metrics import (
    ACTOR_GRAD_NORM,
    ACTOR_LOSS,
    ACTOR_LR,
    ASYNC_STALENESS_MAX,
    ASYNC_STALENESS_MEAN,
    PERF_TOKENS_PER_S,
    RESPONSE_LENGTH_CLIP_RATIO,
    RESPONSE_LENGTH_MAX,
    RESPONSE_LENGTH_MEAN,
    REWARD_ACCURACY,
    REWARD_FORMAT,
    REWARD_MEAN,
    ROLLOUT_NLL,
    VAL_ACCURACY,
    VAL_AVG_AT_K,
    VAL_FORMAT,
    VAL_PASS_AT_K,
    MetricsLogger,
    duration,
    reward_part,
    timing,
    truncate_after,
)
from mindspeed_rl.errors import UserError
from mindspeed_rl.rollout.base import SamplingConfig
from mindspeed_rl.sample import Batch, Finish, Sample
from mindspeed_rl.training.optimizer import lr_at
from mindspeed_rl.utils.console import plural, shown
from mindspeed_rl.utils.fs import atomic_write_text, fsync_tree

TRAINER_STATE = "trainer_state.json"
AHEAD_FILE = "rollout_ahead.json"
"""In a checkpoint of a one-step-off-policy run: the batch collected for the next iteration."""
SAMPLES_FILE = "samples.jsonl"


class Timer:
    """Seconds per named phase of one iteration; ``on_end(phase)``, when given, runs after
    each phase's time is taken (the preflight reads each phase's peak memory there)."""

    def __init__(self, on_end: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_end = on_end
        self.current = ""
        """The phase running now (the innermost one)."""

    @contextmanager
    def __call__(self, phase: str):
        outer, self.current = self.current, phase
        start = time.perf_counter()
        yield
        self.current = outer
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        if self.on_end is not None:
            self.on_end(phase)


def sampling_for(cfg: GRPOConfig, seed: int, **overrides) -> SamplingConfig:
    """The configured sampling with ``seed`` (and any other field) replaced."""
    return replace(cfg.sampling, seed=seed, **overrides)


# -- phases ------------------------------------------------------------------------------


def generate_scored(
    group, prompts: list[list[int]], labels: list[str], sampling: SamplingConfig, version: int,
    t: Timer | None = None, scorers: dict[str, float] | None = None,
) -> list[list[Sample]]:  # fmt: skip
    """Sample every prompt's group (timed as ``rollout``), then score it (``reward``) with
    the reward role's scorers, or ``scorers`` (name -> weight)."""
    t = t or Timer()
    with t("rollout"):
        groups = group.generate(prompts, labels, sampling, version)
    with t("reward"):
        samples = [s for g in groups for s in g]
        scored = iter(group.score(samples, scorers))
    return [[next(scored) for _ in g] for g in groups]


def collect(group, loader: PromptLoader, cfg: GRPOConfig, iteration: int, t: Timer,
            version: int | None = None) -> tuple[Batch, dict[str, float]]:  # fmt: skip
    """B prompt groups, scored, for ``iteration``, sampled by the weights of iteration
    ``version`` (default ``iteration - 1``: on-policy); with dynamic sampling, only
    informative groups (rewards not all equal), refilled from extra prompts for a bounded
    number of rounds."""
    G, B, algo = cfg.sampling.n, cfg.data.prompts_per_iteration, cfg.algorithm
    version = iteration - 1 if version is None else version
    base_seed = cfg.trainer.seed * 1_000_003 + iteration * 10_007
    kept: list[list[Sample]] = []
    spare: list[list[Sample]] = []
    extra = {"dapo/rounds": 0.0}
    for round_ in range(1 + (algo.max_extra_rollouts if algo.dynamic_sampling else 0)):
        prompts = loader.next_batch()
        sampling = sampling_for(cfg, base_seed + round_ * 997)
        groups = generate_scored(group, prompts.prompt_ids, prompts.labels, sampling,
                                 version, t)  # fmt: skip
        extra["dapo/rounds"] += 1
        rewards = torch.tensor([s.total_reward for g in groups for s in g], dtype=torch.float32)
        varied = set(informative_groups(rewards, G).tolist())
        for b, samples in enumerate(groups):
            (kept if b in varied or not algo.dynamic_sampling else spare).append(samples)
        if len(kept) >= B:
            break
    if algo.dynamic_sampling:
        extra["dapo/informative_groups"] = float(min(len(kept), B))
    chosen = (kept + spare)[:B]
    return Batch(tuple(replace(s, group=b) for b, g in enumerate(chosen) for s in g)), extra


@dataclass(frozen=True)
class Ahead:
    """A batch collected before its iteration (one step off policy), with what its
    collection measured."""

    iteration: int
    batch: Batch
    extra: dict[str, float]
    seconds: dict[str, float]
    """Its collection's phase times (rollout, reward), reported with its iteration."""

    def to_json(self) -> dict:
        return {"iteration": self.iteration, "samples": [s.to_json() for s in self.batch],
                "extra": self.extra, "seconds": self.seconds}  # fmt: skip

    @staticmethod
    def from_json(data: dict) -> Ahead:
        samples = tuple(Sample.from_json(s) for s in data["samples"])
        return Ahead(data["iteration"], Batch(samples), data["extra"], data["seconds"])


class Rollouts:
    """Each iteration's scored batch.

    On-policy (``algorithm.max_staleness=0``): sync the weights into the engines, then
    collect. One step off policy (``max_staleness=1``; generation on ranks of its own): while
    iteration i trains, a background thread collects the batch of i+1 with the weights i-1
    (the generation ranks hold them, the training ranks are updating past them); iteration
    i+1 waits for it (``timing/rollout_wait``), sends the new weights, starts the batch of
    i+2 and trains. So every batch is one version behind the policy it updates (the first is
    not), and generation overlaps log-probs and update.
    """

    def __init__(self, group, loader: PromptLoader, cfg: GRPOConfig, ahead: Ahead | None = None,
                 off_policy: bool | None = None):  # fmt: skip
        from concurrent.futures import ThreadPoolExecutor

        self.group, self.loader, self.cfg = group, loader, cfg
        self.off_policy = cfg.algorithm.max_staleness > 0 if off_policy is None else off_policy
        self._pool = ThreadPoolExecutor(1, "rollout-ahead") if self.off_policy else None
        self._running = None  # (iteration, Future) of the batch being collected
        self._ready = ahead

    def take(self, iteration: int, t: Timer) -> tuple[Batch, dict[str, float]]:
        """The batch of ``iteration``: sync -> [generate -> score -> filter], or the one
        collected ahead."""
        if self.off_policy:
            with t("rollout_wait"):
                ready = self.settle()
        else:
            ready = self._ready
        self._ready = None
        if ready is not None and ready.iteration != iteration:
            raise RuntimeError(f"batch collected for iteration {ready.iteration}, "
                               f"taken at {iteration}")  # fmt: skip
        with t("sync"):
            self.group.to_rollout()  # a no-op when the engines already hold these weights
        if ready is None:
            batch, extra = collect(self.group, self.loader, self.cfg, iteration, t)
        else:
            batch, extra = ready.batch, ready.extra
            for phase, seconds in ready.seconds.items():
                t.seconds[phase] = t.seconds.get(phase, 0.0) + seconds
        if self.off_policy and iteration < self.cfg.trainer.iterations:
            self._running = (iteration + 1, self._pool.submit(self._collect, iteration + 1,
                                                              iteration - 1))  # fmt: skip
        return batch, extra

    def _collect(self, iteration: int, version: int) -> Ahead:
        t = Timer()
        batch, extra = collect(self.group, self.loader, self.cfg, iteration, t, version)
        return Ahead(iteration, batch, extra, t.seconds)

    def settle(self) -> Ahead | None:
        """Wait for the batch being collected, if any (before a validation or a save: the
        generation ranks are then idle); it stays for its iteration, and is returned so that
        a checkpoint can keep it."""
        if self._running is not None:
            _, future = self._running
            self._running = None
            self._ready = future.result()
        return self._ready

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def staleness_metrics(batch: Batch, iteration: int, bound: int) -> dict[str, float]:
    """How many versions each sample lags the policy it updates (``iteration - 1``); a
    sample beyond ``bound`` stops the run (it must never be used silently)."""
    lags = [iteration - 1 - s.version for s in batch]
    if max(lags) > bound or min(lags) < 0:
        raise RuntimeError(
            f"iteration {iteration}: samples of policy versions {sorted({s.version for s in batch})}"
            f" used with algorithm.max_staleness={bound}"
        )
    return {ASYNC_STALENESS_MEAN: sum(lags) / len(lags), ASYNC_STALENESS_MAX: float(max(lags))}


def shape_rewards(batch: Batch, algo: AlgorithmConfig, max_tokens: int) -> Batch:
    """DAPO overlong shaping on top of the rule rewards (when configured)."""
    if not algo.overlong_buffer:
        return batch
    lengths = torch.tensor([len(s.response_ids) for s in batch], dtype=torch.float32)
    penalty = overlong_penalty(lengths, max_tokens, algo.overlong_buffer, algo.overlong_penalty)
    return batch.with_column("penalty", penalty.tolist())


def compute_advantages(batch: Batch, estimator: str, group_size: int) -> Batch:
    """Each sample's advantage from its group's rewards (``algorithm.advantage``)."""
    rewards = torch.tensor(batch.rewards, dtype=torch.float32)
    advantages = ADVANTAGE_ESTIMATORS[estimator](rewards, group_size)
    return batch.with_column("advantage", advantages.tolist())


def compute_logprobs(group, batch: Batch, reference: bool, old: bool) -> Batch:
    """Reference log-probs (when KL is on) and old log-probs (when a batch is used for more
    than one update; with one update, old = current detached, exactly on-policy)."""
    if reference:
        batch = batch.with_column("ref_logprobs", group.logprobs(batch, reference=True))
    if old:
        batch = batch.with_column("old_logprobs", group.logprobs(batch))
    return batch


def update(group, batch: Batch, trainer: TrainerConfig, lr: float) -> dict[str, float]:
    """One optimizer step per mini-batch, ``trainer.ppo_epochs`` passes over the batch."""
    n = len(batch)
    mini = trainer.mini_batch_size or n
    mini_batches = [list(range(k, min(n, k + mini))) for _ in range(trainer.ppo_epochs)
                    for k in range(0, n, mini)]  # fmt: skip
    return {**group.update(batch, mini_batches, lr), ACTOR_LR: lr}


def learning_rate(optim: OptimConfig, iteration: int, iterations: int) -> float:
    return lr_at(iteration, iterations, optim.lr, optim.min_lr, optim.warmup_iterations,
                 optim.decay)  # fmt: skip


@dataclass(frozen=True)
class ValSet:
    """A held-out set: its prompts and labels, samples per prompt besides the greedy one, and
    the metric prefix (``val`` for data.val_prefix, ``val/<name>`` for data.val_sets)."""

    prefix: str
    prompts: list[list[int]]
    labels: list[str]
    n: int
    scorer: str = ""
    """Its accuracy scorer; empty: reward.accuracy's."""


def validate(group, sets: list[ValSet], cfg: GRPOConfig) -> dict[str, float]:
    """Per set: greedy pass@1 and format, and with n > 1 avg@n / pass@n at the training
    temperature."""
    out: dict[str, float] = {}
    fmt = cfg.reward.format_scorer
    for v in sets:
        accuracy = v.scorer or cfg.reward.accuracy_scorer
        # A set with a scorer of its own: that scorer, and the format scorer logged beside it.
        scorers = {v.scorer: 1.0, **({fmt: 0.0} if fmt else {})} if v.scorer else None
        greedy = generate_scored(group, v.prompts, v.labels,
                                 sampling_for(cfg, cfg.trainer.seed, n=1, top_k=1), 0,
                                 scorers=scorers)  # fmt: skip
        sampled = None
        if v.n > 1:
            sampling = sampling_for(cfg, cfg.trainer.seed + 1, n=v.n)
            sampled = generate_scored(group, v.prompts, v.labels, sampling, 0, scorers=scorers)
        figures = validation_metrics(greedy, sampled, accuracy, fmt)
        out |= {v.prefix + k.removeprefix("val"): x for k, x in figures.items()}
    return out


def validation_metrics(
    greedy: list[list[Sample]], sampled: list[list[Sample]] | None, acc_part: str,
    fmt_part: str | None,
) -> dict[str, float]:  # fmt: skip
    """val/accuracy (pass@1) and val/format of the greedy responses; val/avg_at_k and
    val/pass_at_k over the sampled ones when there are any. The numbers are cli/eval.py's
    (:mod:`mindspeed_rl.eval.metrics`): a sample is right when its accuracy part is >= 0.5."""
    from mindspeed_rl.eval.metrics import format_rate, greedy_metrics, sampled_metrics

    def part(groups: list[list[Sample]], name: str) -> list[list[float]]:
        return [[s.reward.parts[name] for s in g] for g in groups]

    out = {VAL_ACCURACY: greedy_metrics(part(greedy, acc_part))["pass@1"]}
    if fmt_part is not None:
        out[VAL_FORMAT] = format_rate(part(greedy, fmt_part))
    if sampled is not None:
        k = min(len(g) for g in sampled)
        figures = sampled_metrics(part(sampled, acc_part), k)
        out[VAL_AVG_AT_K] = figures[f"avg@{k}"]
        out[VAL_PASS_AT_K] = figures[f"pass@{k}"]
    return out


def rollout_metrics(batch: Batch, acc_part: str, fmt_part: str | None) -> dict[str, float]:
    rewards = batch.rewards
    lengths = [len(s.response_ids) for s in batch]
    parts = [s.reward.parts for s in batch]
    m = {
        REWARD_MEAN: sum(rewards) / len(rewards),
        RESPONSE_LENGTH_MEAN: sum(lengths) / len(lengths),
        RESPONSE_LENGTH_MAX: float(max(lengths)),
        RESPONSE_LENGTH_CLIP_RATIO: sum(s.finish is Finish.LENGTH for s in batch) / len(lengths),
    }
    # Token-mean negative log-prob of the sampled tokens by the engine. Sampling from the
    # policy itself (T=1, no top-k / top-p), its expectation is the policy's entropy along
    # the sampled responses: next to actor/entropy it shows whether the engine samples the
    # distribution the actor trains (bench/learning_parity.py measured both at 0.81).
    logprobs = [lp for s in batch for lp in s.rollout_logprobs or ()]
    if logprobs:
        m[ROLLOUT_NLL] = -sum(logprobs) / len(logprobs)
    for name in parts[0]:
        m[reward_part(name)] = sum(p[name] for p in parts) / len(parts)
    # The accuracy and format scorers under one name each, whichever scorers they are (curves,
    # console, runs compare).
    m[REWARD_ACCURACY] = m[reward_part(acc_part)]
    if fmt_part is not None:
        m[REWARD_FORMAT] = m[reward_part(fmt_part)]
    return m


# -- checkpoints -------------------------------------------------------------------------


def latest_checkpoint(root: Path) -> int | None:
    """The newest complete checkpoint under ``root`` (an ``iter_N`` folder with its trainer
    state, which a save writes before the folder gets its name), or None. The tracker file is
    a pointer for Megatron tools, not trusted here: missing, empty, or pointing at a folder
    that is gone, the newest complete one is still found."""
    return max(complete_checkpoints(root), default=None)


def complete_checkpoints(root: Path) -> list[int]:
    """Iterations of the complete checkpoints under ``root``."""
    return [
        int(d.name.removeprefix("iter_"))
        for d in root.glob("iter_*")
        if d.name.removeprefix("iter_").isdigit() and (d / TRAINER_STATE).is_file()
    ]


def check_training_state(folder: Path) -> None:
    """Refuse, before any worker starts, a checkpoint without the training state this version
    resumes from (written by an older mindspeed-rl: per-rank optimizer files)."""
    if not (folder / mf.TRAINING_STATE_DIR).is_dir():
        raise UserError(
            f"{shown(folder)} was written by an older mindspeed-rl (per-rank optimizer files, "
            f"no {mf.TRAINING_STATE_DIR}/), which this version cannot resume; export its "
            "model (cli/convert_ckpt.py mcore2hf) and start a new run from it, or start over "
            "with trainer.resume=never trainer.overwrite=true"
        )


def save_checkpoint(group, root: Path, iteration: int, loader: PromptLoader, keep: int = 0,
                    ahead: Ahead | None = None) -> None:  # fmt: skip
    """All ranks write into a temporary directory; it is flushed to disk and becomes iter_N by
    one rename, and the tracker moves last, so a kill (or a power loss) at any point leaves
    the previous checkpoint usable. A failed save leaves nothing behind. ``ahead``: the batch
    already collected for the next iteration (one step off policy), which the loader's state
    has moved past: kept with it, so a resume trains on the same batch."""
    tmp = root / f".tmp-{mf.iter_dir_name(iteration)}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        group.save(tmp, iteration)
        state = {"iteration": iteration, "loader": loader.state_dict()}
        if ahead is not None:
            (tmp / mf.iter_dir_name(iteration) / AHEAD_FILE).write_text(json.dumps(ahead.to_json()))
        (tmp / mf.iter_dir_name(iteration) / TRAINER_STATE).write_text(json.dumps(state))
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / mf.iter_dir_name(iteration)
    shutil.rmtree(final, ignore_errors=True)
    (tmp / mf.iter_dir_name(iteration)).rename(final)
    shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / mf.TRACKER, f"{iteration}\n")
    if keep:
        for old in sorted(complete_checkpoints(root))[:-keep]:
            shutil.rmtree(root / mf.iter_dir_name(old))


def previous_run(out: Path, metrics_dir: Path) -> str | None:
    """What a previous run left (metric rows in ``metrics_dir``, checkpoints in ``out``)."""
    from mindspeed_rl.driver.metrics import METRICS_FILE, load_metrics

    found = []
    metrics = metrics_dir / METRICS_FILE
    if metrics.is_file() and (rows := load_metrics(metrics)):
        found.append(f"{len(rows)} iterations in {METRICS_FILE}")
    checkpoints = sorted((out / "checkpoints").glob("iter_*"))
    if checkpoints:
        found.append(f"checkpoints {', '.join(c.name for c in checkpoints[-3:])}")
    return "; ".join(found) or None


def start_fresh(out: Path, cfg: GRPOConfig) -> None:
    """A run that starts from iteration 1 in ``out``: refused when a previous run's history
    is there, unless ``trainer.overwrite`` says to replace it (then its checkpoints go too,
    so no later resume can pick one of them up)."""
    history = previous_run(out, Path(cfg.logging.dir))
    if history is None:
        return
    if not cfg.trainer.overwrite:
        raise UserError(
            f"trainer.output_dir {shown(out)} holds a previous run ({history}) and this run "
            "would start from iteration 1; resume it (trainer.resume=auto, the default, needs "
            "a complete checkpoint), pick another trainer.output_dir, or set "
            "trainer.overwrite=true to replace it"
        )
    ckpt_root = out / "checkpoints"
    for old in ckpt_root.glob("iter_*"):
        shutil.rmtree(old)
    (ckpt_root / mf.TRACKER).unlink(missing_ok=True)


# -- the run -----------------------------------------------------------------------------


INIT_SOURCE = "source.json"
"""What ``<output_dir>/init_mcore`` was converted from (see :func:`init_fingerprint`)."""


def init_fingerprint(hf_dir: Path, tp: int, pp: int) -> dict:
    """What the converted initial checkpoint depends on: the HF folder, its config, its weight
    files (names, sizes, modification times) and the layout."""
    import hashlib

    weights = sorted(
        [p.name, p.stat().st_size, int(p.stat().st_mtime)]
        for p in hf_dir.iterdir()
        if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")
    )
    config = hashlib.sha256((hf_dir / "config.json").read_bytes()).hexdigest()
    return {"hf_dir": str(hf_dir), "config_sha256": config, "weights": weights, "tp": tp, "pp": pp}


def prepare_initial_checkpoint(cfg: GRPOConfig, out: Path) -> Path:
    """The Megatron checkpoint training starts from: ``model.load_dir``, else ``model.hf_dir``
    converted into ``<output_dir>/init_mcore`` — again whenever the HF model or the layout is
    not the one it was converted from (a run that changes the model but keeps its output_dir
    must not train the old one)."""
    if cfg.model.load_dir:
        return resolve(cfg.model.load_dir)
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    init = out / "init_mcore"
    hf_dir = resolve(cfg.model.hf_dir)
    wanted = init_fingerprint(hf_dir, cfg.model.tp, cfg.model.pp)
    source = init / INIT_SOURCE
    current = json.loads(source.read_text()) if source.is_file() else None
    if current != wanted or not (init / mf.TRACKER).is_file():
        # In the HF checkpoint's own dtype, not model.params_dtype: the optimizer's fp32 main
        # params start from these values (training.optimizer.init_main_params).
        hf_to_mcore(hf_dir, init, tp=cfg.model.tp, pp=cfg.model.pp, overwrite=True)
        atomic_write_text(source, json.dumps(wanted, indent=1))
    return init


def val_sets(cfg: GRPOConfig) -> list[ValSet]:
    """data.val_prefix and data.val_sets, when validation is on (trainer.val_interval)."""
    if not cfg.trainer.val_interval:
        return []
    wanted = [("val", cfg.data.val_prefix, cfg.data.val_prompts, cfg.trainer.val_n, "")]
    wanted += [(f"val/{name}", v.prefix, v.prompts, v.n, v.scorer)
               for name, v in cfg.data.val_sets.items()]  # fmt: skip
    sets = []
    for metric_prefix, prefix, count, n, scorer in wanted:
        if not prefix:
            continue
        ds = PromptDataset(resolve(prefix))
        rows = range(min(len(ds), count))
        sets.append(ValSet(metric_prefix, [ds.prompt_ids(i) for i in rows],
                           [ds.label(i) for i in rows], n, scorer))  # fmt: skip
    return sets


def resolved(cfg: GRPOConfig) -> GRPOConfig:
    """``cfg`` with what start-up derives filled in (the assistant prefix, the absolute
    logging directory): a new config, the caller's is left as it was."""
    data = replace(cfg.data, assistant_prefix=resolve_assistant_prefix(cfg))
    return replace(cfg, data=data, logging=replace(cfg.logging, dir=str(resolve(cfg.logging.dir))))


def resolve_assistant_prefix(cfg: GRPOConfig) -> str:
    """The assistant prefix responses are scored with: the config's, else the one the training
    set was preprocessed with; a held-out set built with another template is refused."""
    if cfg.data.assistant_prefix is not None:
        return cfg.data.assistant_prefix
    prefix = PromptDataset(resolve(cfg.data.train_prefix)).summary.get("assistant_prefix", "")
    held_out = [("data.val_prefix", cfg.data.val_prefix)]
    held_out += [(f"data.val_sets.{name}", v.prefix) for name, v in cfg.data.val_sets.items()]
    for key, path in held_out:
        if not path:
            continue
        val = PromptDataset(resolve(path)).summary.get("assistant_prefix", "")
        if val != prefix:
            raise UserError(
                f"{key} was preprocessed with assistant prefix {val!r} but "
                f"data.train_prefix with {prefix!r}; preprocess both with the same template"
            )
    return prefix


def startup_summary(cfg: GRPOConfig, config_name: str, load_dir: Path, resume: int | None,
                    train_rows: int, val_rows: int) -> list[str]:  # fmt: skip
    """What a run is about to do, in a few lines: model, layout, data, batch, where output goes."""
    from mindspeed_rl.plan.memory import total_params
    from mindspeed_rl.utils.console import logs_dir

    _, meta = mf.read_meta(load_dir)
    spec, m = meta.spec, cfg.model
    name = Path(m.hf_dir).name if m.hf_dir else load_dir.name
    out = resolve(cfg.trainer.output_dir)
    val = f"; held-out {val_rows} ({cfg.data.val_prefix})" if val_rows else ""
    start = f"resuming after iteration {resume}" if resume else "from the start"
    logs = "shown here (--verbose)" if cfg.logging.verbose else f"in {shown(logs_dir(out))}/"
    return [
        f"mindspeed-rl GRPO: {config_name} -> {shown(out)}",
        f"  model   {name}: {spec.family}, {spec.num_layers} layers, hidden {spec.hidden_size}, "
        f"{total_params(spec) / 1e6:.1f}M parameters, {m.params_dtype}",
        f"  layout  {ranks_text(cfg)}: {layout_text(cfg)}",
        f"  data    train {train_rows} prompts ({cfg.data.train_prefix}){val}",
        f"  run     {cfg.trainer.iterations} iterations x {cfg.data.prompts_per_iteration} prompts "
        f"x {cfg.sampling.n} samples, responses <= {cfg.sampling.max_tokens} tokens, {start}",
        f"  logs    what vLLM, megatron-core and Ray print: {logs}",
    ] + ([f"  note    {note}"] if (note := dtype_note(cfg)) else [])


def ranks_text(cfg: GRPOConfig) -> str:
    """All of a run's ranks and nodes: ``3 cpu ranks on 1 node`` (the configured device kind,
    or what ``auto`` finds here)."""
    res = cfg.resources
    total = res.world_size + res.rollout_workers
    kind = get_kind(cfg) if res.device == "auto" else res.device
    return f"{total} {kind} ranks on {plural(res.nnodes, 'node')}"


def layout_text(cfg: GRPOConfig) -> str:
    """Which ranks train (with what parallelism) and which generate, and when: the one
    wording of the start-up summary, ``--check`` and ``--preflight``."""
    m, res, tp = cfg.model, cfg.resources, cfg.rollout.infer_tp
    vpp = f" x {m.virtual_pipeline_stages} virtual" if m.virtual_pipeline_stages > 1 else ""
    optimizer = "distributed" if cfg.optim.use_distributed_optimizer else "replicated"
    recompute = f", {m.recompute_granularity} recompute" if m.recompute_granularity else ""
    n, gen = res.world_size, res.rollout_workers
    s = "s" if n == 1 else ""  # "1 rank trains", "2 ranks train"
    train = (f"{plural(n, 'rank')} train{s} (TP{m.tp} PP{m.pp}{vpp} DP{cfg.dp}, "
             f"{optimizer} optimizer{recompute})")  # fmt: skip
    engine = f"{cfg.rollout.engine} engine"
    engines = f"{plural((gen or n) // tp, engine)} of infer TP{tp}"
    if not gen:
        return f"{train} and generate{s} in turn ({engines})"
    when = ("the next batch while this one trains (one step off policy)"
            if cfg.algorithm.max_staleness else "after each update (on-policy)")  # fmt: skip
    return f"{train}; {gen} more only generate{'s' if gen == 1 else ''} ({engines}), {when}"


def dtype_note(cfg: GRPOConfig) -> str | None:
    """A warning for bf16 on a CPU that emulates it (see cpu_has_bf16_matmul)."""
    from mindspeed_rl.accelerator import cpu_bf16_note, cpu_has_bf16_matmul

    dtypes = {"model.params_dtype": cfg.model.params_dtype}
    if cfg.rollout.engine == "vllm":
        dtypes["rollout.dtype"] = cfg.rollout.dtype
    return cpu_bf16_note(get_kind(cfg), dtypes, cpu_has_bf16_matmul())


def get_kind(cfg: GRPOConfig) -> str:
    from mindspeed_rl.accelerator import get_accelerator

    return get_accelerator(cfg.resources.device).kind


def final_summary(out: Path, metrics_file: Path, seconds: float, iterations: int) -> list[str]:
    """Held-out accuracy from the first validation to the last, time, where things are."""
    from mindspeed_rl.driver.metrics import VAL_ACCURACY, VAL_FORMAT, load_metrics

    val = [row for row in load_metrics(metrics_file) if VAL_ACCURACY in row]
    lines = [f"done: {plural(iterations, 'iteration')} in {duration(seconds)}"]
    if val:
        first, last = val[0], val[-1]
        text = (f"  held-out accuracy {first[VAL_ACCURACY]:.3f} (iteration {first['iteration']})"
                f" -> {last[VAL_ACCURACY]:.3f} (iteration {last['iteration']})")  # fmt: skip
        if VAL_FORMAT in first and VAL_FORMAT in last:
            text += f", format {first[VAL_FORMAT]:.3f} -> {last[VAL_FORMAT]:.3f}"
        lines.append(text)
    lines.append(f"  metrics {shown(metrics_file)} (python cli/plot_metrics.py draws the curves)")
    if (out / "hf").is_dir():
        lines.append(f"  HF model {shown(out / 'hf')}")
    return lines


def train(
    cfg: GRPOConfig,
    config_name: str = "grpo",
    console: TextIO | None = None,
    make_group: Callable | None = None,
) -> dict[str, float]:
    """Run GRPO as configured; returns the last iteration's metrics. Console lines (summary,
    progress, checkpoints) go to ``console`` (default stderr). ``make_group(cfg, load_dir,
    hf_meta_dir)`` builds the worker group (default: the Ray one; tests pass a fake)."""
    from mindspeed_rl.accelerator import hide_expected_cpu_notices

    if make_group is None:
        from mindspeed_rl.workers.group import WorkerGroup as make_group

    began = time.perf_counter()
    hide_expected_cpu_notices()
    cfg = resolved(cfg)
    out = resolve(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_root = out / "checkpoints"
    resume = latest_checkpoint(ckpt_root) if cfg.trainer.resume == "auto" else None
    if resume is not None:
        check_training_state(ckpt_root / mf.iter_dir_name(resume))
    if resume is None:
        start_fresh(out, cfg)  # before anything of a previous run is written over
    truncate_after(out / SAMPLES_FILE, resume)  # a resumed run repeats what followed
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    load_dir = prepare_initial_checkpoint(cfg, out)
    ckpt_root.mkdir(exist_ok=True)
    if not (ckpt_root / mf.HF_META_DIR).is_dir():
        shutil.copytree(load_dir / mf.HF_META_DIR, ckpt_root / mf.HF_META_DIR)
    loader = PromptLoader(PromptLoaderConfig(
        data_prefix=str(resolve(cfg.data.train_prefix)),
        batch_size=cfg.data.prompts_per_iteration, seed=cfg.data.seed,
    ))  # fmt: skip
    val = val_sets(cfg)
    logger = MetricsLogger(cfg.logging, total_iterations=cfg.trainer.iterations,
                           resume_iteration=resume, run_config=to_dict(cfg),
                           console_stream=console)  # fmt: skip
    train_rows = len(PromptDataset(resolve(cfg.data.train_prefix)))
    for line in startup_summary(cfg, config_name, load_dir, resume, train_rows,
                                sum(len(v.prompts) for v in val)):  # fmt: skip
        logger.message(line)
    try:
        ready = time.perf_counter()
        group = make_group(cfg, load_dir, ckpt_root / mf.HF_META_DIR)
        try:
            nodes = len({p["node_id"] for p in group.placement})
            logger.message(f"workers ready in {duration(time.perf_counter() - ready)} "
                           f"({len(group.placement)} ranks on {plural(nodes, 'node')})")  # fmt: skip
            (out / "placement.json").write_text(json.dumps(group.placement, indent=2))
            start, ahead = 1, None
            if resume is not None:
                folder = ckpt_root / mf.iter_dir_name(resume)
                state = json.loads((folder / TRAINER_STATE).read_text())
                group.load(ckpt_root, resume)
                loader.load_state_dict(state["loader"])
                start = resume + 1
                ahead = load_ahead(folder, cfg, logger)
            metrics = run_iterations(group, loader, val, logger, cfg, start, out, ahead)
        finally:
            group.shutdown()
        if cfg.trainer.export_hf and latest_checkpoint(ckpt_root) == cfg.trainer.iterations:
            from mindspeed_rl.checkpoint.convert import mcore_to_hf

            mcore_to_hf(ckpt_root, out / "hf", overwrite=True)
            logger.message(f"exported the trained policy as an HF model: {shown(out / 'hf')}")
        seconds = time.perf_counter() - began
        for line in final_summary(out, logger.path, seconds, cfg.trainer.iterations):
            logger.message(line)
    finally:
        logger.close()
    return metrics


def load_ahead(folder: Path, cfg: GRPOConfig, logger: MetricsLogger) -> Ahead | None:
    """The batch a one-step-off-policy checkpoint collected for its next iteration."""
    path = folder / AHEAD_FILE
    if not path.is_file():
        return None
    if not cfg.algorithm.max_staleness:
        logger.message(f"{shown(path)}: a batch collected one step ahead, not used "
                       "on-policy (algorithm.max_staleness=0); its prompts are skipped")  # fmt: skip
        return None
    try:
        return Ahead.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{shown(path)}: unreadable ({type(err).__name__}: {err}); the "
            "checkpoint is damaged, resume from an earlier one"
        ) from None


def train_step(
    group, loader: PromptLoader, cfg: GRPOConfig, iteration: int, t: Timer,
    rollouts: Rollouts | None = None,
) -> tuple[Batch, dict[str, float], dict[str, float]]:  # fmt: skip
    """One iteration's phases, each timed by ``t``. Returns the batch, the update's metrics
    and the rollout's extra metrics. ``rollouts``: where batches come from (default:
    on-policy collection now)."""
    rollouts = rollouts or Rollouts(group, loader, cfg, off_policy=False)
    batch, extra = rollouts.take(iteration, t)  # sync -> generate -> score -> filter
    extra |= staleness_metrics(batch, iteration, cfg.algorithm.max_staleness)
    with t("to_train"):
        group.to_train()
    batch = shape_rewards(batch, cfg.algorithm, cfg.sampling.max_tokens)
    with t("logprobs"):
        batch = compute_logprobs(group, batch, cfg.loss.kl_coef > 0, cfg.updates_per_batch > 1)
    batch = compute_advantages(batch, cfg.algorithm.advantage, cfg.sampling.n)
    with t("update"):
        lr = learning_rate(cfg.optim, iteration, cfg.trainer.iterations)
        actor = update(group, batch, cfg.trainer, lr)
    return batch, actor, extra


def run_iterations(
    group,
    loader: PromptLoader,
    val: list[ValSet],
    logger: MetricsLogger,
    cfg: GRPOConfig,
    start: int,
    out: Path,
    ahead: Ahead | None = None,
) -> dict[str, float]:
    """Iterations ``start`` .. ``trainer.iterations``: sync -> generate -> score -> log-probs ->
    advantages -> update, validation and checkpoints on their intervals. ``ahead``: the
    batch a one-step-off-policy checkpoint had collected for iteration ``start``."""
    rollouts = Rollouts(group, loader, cfg, ahead)
    try:
        return _iterations(group, rollouts, loader, val, logger, cfg, start, out)
    finally:
        rollouts.close()


def _iterations(group, rollouts: Rollouts, loader: PromptLoader, val: list[ValSet],
                logger: MetricsLogger, cfg: GRPOConfig, start: int,
                out: Path) -> dict[str, float]:  # fmt: skip
    ckpt_root = out / "checkpoints"
    acc, fmt = cfg.reward.accuracy_scorer, cfg.reward.format_scorer
    metrics: dict[str, float] = {}
    for iteration in range(start, cfg.trainer.iterations + 1):
        t = Timer()
        with t("step"):
            if val and iteration == 1:
                with t("sync"):
                    group.to_rollout()
                with t("validation"):
                    logger.log(0, validate(group, val, cfg))
            batch, actor, extra = train_step(group, loader, cfg, iteration, t, rollouts)
        metrics = {**rollout_metrics(batch, acc, fmt), **actor, **extra,
                   **{timing(k): v for k, v in t.seconds.items()},
                   PERF_TOKENS_PER_S: sum(s.tokens for s in batch) / t.seconds["step"]}  # fmt: skip
        logger.log(iteration, metrics)
        _write_samples(out, iteration, batch)
        check_finite(actor, iteration, ckpt_root)
        if val and iteration % cfg.trainer.val_interval == 0:
            rollouts.settle()  # the engines finish the batch they are on first
            group.to_rollout()
            logger.log(iteration, validate(group, val, cfg))
        interval = cfg.trainer.save_interval
        if iteration == cfg.trainer.iterations or (interval and iteration % interval == 0):
            ahead = rollouts.settle()
            group.to_train()  # checkpoints hold the optimizer state, on device
            save_checkpoint(group, ckpt_root, iteration, loader, cfg.trainer.keep_checkpoints,
                            ahead)  # fmt: skip
            logger.message(f"checkpoint {shown(ckpt_root / mf.iter_dir_name(iteration))}")
    return metrics


def check_finite(actor: dict[str, float], iteration: int, ckpt_root: Path) -> None:
    """Stop at the first non-finite loss or gradient norm: the weights it produced are not
    saved, so the newest checkpoint stays the last good one."""
    bad = {k: v for k, v in actor.items() if k in (ACTOR_LOSS, ACTOR_GRAD_NORM)
           and not math.isfinite(v)}  # fmt: skip
    if bad:
        last = latest_checkpoint(ckpt_root)
        kept = f"the last good checkpoint is {mf.iter_dir_name(last)}" if last else "no checkpoint"
        raise UserError(
            f"iteration {iteration}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; "
            f"stopped without saving ({kept}); lower optim.lr or optim.clip_grad, or check "
            "that iteration's rewards (reward/*) and samples"
        )


def _write_samples(out: Path, iteration: int, batch: Batch) -> None:
    """A few responses per iteration, to read what the policy writes."""
    with (out / SAMPLES_FILE).open("a") as f:
        for s in batch.samples[:4]:
            row = {"iteration": iteration, "reward": s.total_reward, "text": s.text,
                   "reasons": s.reward.reasons}  # fmt: skip
            f.write(json.dumps(row) + "\n")
