"""The GRPO loop: rollout -> reward -> reference / old log-probs -> advantages -> update,
with weight sync at the start of each iteration, validation, checkpoints and export."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch

from mindspeed_rl.algorithms.advantages import grpo_advantages, mean_centred_advantages
from mindspeed_rl.algorithms.dapo import informative_groups, overlong_penalty
from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.config.grpo import GRPOConfig, resolve
from mindspeed_rl.config.structured import to_dict
from mindspeed_rl.data.indexed import PromptDataset
from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
from mindspeed_rl.errors import UserError
from mindspeed_rl.trainer.metrics import REWARD_ACCURACY, REWARD_FORMAT, MetricsLogger, duration
from mindspeed_rl.trainer.transfer_dock import TransferDock
from mindspeed_rl.training.actor import Samples
from mindspeed_rl.training.optimizer import lr_at
from mindspeed_rl.utils.console import plural, shown
from mindspeed_rl.utils.fs import atomic_write_text

COLUMNS = ("prompt", "label", "response", "rollout_logprobs", "finish", "reward", "parts",
           "text", "old_logprobs", "ref_logprobs", "advantage")  # fmt: skip
TRAINER_STATE = "trainer_state.json"


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


def _shards(n: int, parts: int) -> list[range]:
    per = -(-n // parts)
    return [range(min(n, k * per), min(n, (k + 1) * per)) for k in range(parts)]


def _sampling(cfg: GRPOConfig, seed: int, **overrides) -> dict:
    s = to_dict(cfg.sampling)
    s.update(seed=seed, **overrides)
    return s


# -- phases ------------------------------------------------------------------------------


def generate_and_score(group, prompts, labels, sampling: dict) -> list[list[dict]]:
    """Sample every prompt's group across the inference engines; score each engine's share
    as it arrives.

    An engine is a group of ``rollout.infer_tp`` consecutive ranks: all of them get the same
    prompts and seed (vLLM's external launcher needs identical calls on every rank of a
    group) and the group's first rank's completions are used. Returns, per prompt, its
    samples as dicts (response, logprobs, finish, reward, parts, text). Scoring of one
    engine's responses overlaps with the other engines still generating.
    """
    import ray

    engines = group.engines()
    shards = [s for s in _shards(len(prompts), len(engines)) if len(s)]
    pending, followers = {}, []
    for ranks, shard in zip(engines, shards):
        seeded = dict(sampling, seed=sampling["seed"] + shard.start)
        refs = [w.generate.remote([prompts[i] for i in shard], seeded) for w in ranks]
        pending[refs[0]] = shard
        followers += refs[1:]
    groups: list[list[dict] | None] = [None] * len(prompts)
    scoring = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(done[0])
        completions = ray.get(done[0])
        flat = [(i, c) for i, group_c in zip(shard, completions) for c in group_c]
        ids = [c[0] for _, c in flat]
        score_ref = group.reward.score.remote(ids, [labels[i] for i, _ in flat])
        scoring[score_ref] = flat
    ray.get(followers)  # the other ranks of each engine: same completions
    for score_ref, flat in scoring.items():
        for (i, c), (total, parts, text) in zip(flat, ray.get(score_ref)):
            sample = {"response": c[0], "logprobs": c[1], "finish": c[2], "reward": total,
                      "parts": parts, "text": text}  # fmt: skip
            groups[i] = (groups[i] or []) + [sample]
    return groups  # type: ignore[return-value]


def rollout(
    group, loader: PromptLoader, cfg: GRPOConfig, iteration: int
) -> tuple[TransferDock, dict]:
    """B prompt groups in a transfer dock; with dynamic sampling, only informative groups
    (rewards not all equal), refilled from extra prompts for a bounded number of rounds."""
    G, B = cfg.sampling.n, cfg.data.prompts_per_iteration
    base_seed = cfg.trainer.seed * 1_000_003 + iteration * 10_007
    kept: list[tuple[list[int], str, list[dict]]] = []
    spare: list[tuple[list[int], str, list[dict]]] = []
    extra = {"dapo/rounds": 0.0}
    for round_ in range(
        1 + (cfg.algorithm.max_extra_rollouts if cfg.algorithm.dynamic_sampling else 0)
    ):
        batch = loader.next_batch()
        groups = generate_and_score(
            group, batch.prompt_ids, batch.labels, _sampling(cfg, base_seed + round_ * 997)
        )
        extra["dapo/rounds"] += 1
        rewards = torch.tensor([s["reward"] for g in groups for s in g], dtype=torch.float32)
        varied = set(informative_groups(rewards, G).tolist())
        for b, item in enumerate(zip(batch.prompt_ids, batch.labels, groups)):
            keep = b in varied or not cfg.algorithm.dynamic_sampling
            (kept if keep else spare).append(item)
        if len(kept) >= B:
            break
    if cfg.algorithm.dynamic_sampling:
        extra["dapo/informative_groups"] = float(min(len(kept), B))
    chosen = (kept + spare)[:B]
    dock = TransferDock(B * G, COLUMNS)
    for b, (prompt, label, samples) in enumerate(chosen):
        idx = list(range(b * G, (b + 1) * G))
        dock.put("prompt", idx, [prompt] * G)
        dock.put("label", idx, [label] * G)
        for column, key in (("response", "response"), ("rollout_logprobs", "logprobs"),
                            ("finish", "finish"), ("reward", "reward"), ("parts", "parts"),
                            ("text", "text")):  # fmt: skip
            dock.put(column, idx, [s[key] for s in samples])
    return dock, extra


def shape_rewards(dock: TransferDock, cfg: GRPOConfig) -> None:
    """DAPO overlong shaping on top of the rule rewards (when configured)."""
    if not cfg.algorithm.overlong_buffer:
        return
    lengths = torch.tensor([len(r) for r in dock.get("response")], dtype=torch.float32)
    penalty = overlong_penalty(
        lengths,
        cfg.sampling.max_tokens,
        cfg.algorithm.overlong_buffer,
        cfg.algorithm.overlong_penalty,
    )
    rewards = [r + float(p) for r, p in zip(dock.get("reward"), penalty)]
    dock.put("reward", range(dock.size), rewards)


def compute_advantages(dock: TransferDock, cfg: GRPOConfig) -> None:
    rewards = torch.tensor(dock.get("reward"), dtype=torch.float32)
    if cfg.algorithm.advantage == "grpo":
        adv = grpo_advantages(rewards, cfg.sampling.n)
    else:
        adv = mean_centred_advantages(rewards, cfg.sampling.n)
    dock.put("advantage", range(dock.size), adv.tolist())


def _samples(dock: TransferDock, with_training_columns: bool = False) -> Samples:
    s = Samples(prompt_ids=dock.get("prompt"), response_ids=dock.get("response"))
    if with_training_columns:
        s.advantages = dock.get("advantage")
        s.rollout_logprobs = dock.get("rollout_logprobs")
        if dock.all_ready("old_logprobs"):
            s.old_logprobs = dock.get("old_logprobs")
        if dock.all_ready("ref_logprobs"):
            s.ref_logprobs = dock.get("ref_logprobs")
    return s


def _gather_logprobs(results: list[dict[int, list[float]]], n: int) -> list[list[float]]:
    merged: dict[int, list[float]] = {}
    for r in results:
        merged.update(r)
    return [merged[i] for i in range(n)]


def compute_logprobs(group, dock: TransferDock, cfg: GRPOConfig, updates_per_batch: int) -> None:
    """Reference log-probs (when KL is on) and old log-probs (when a batch is used for more
    than one update; with one update, old = current detached, exactly on-policy)."""
    samples = _samples(dock)
    if cfg.loss.kl_coef > 0:
        ref = group.call("logprobs", samples, True)
        dock.put("ref_logprobs", range(dock.size), _gather_logprobs(ref, dock.size))
    if updates_per_batch > 1:
        old = group.call("logprobs", samples, False)
        dock.put("old_logprobs", range(dock.size), _gather_logprobs(old, dock.size))


def update(group, dock: TransferDock, cfg: GRPOConfig, iteration: int) -> dict[str, float]:
    n = dock.size
    mini = cfg.trainer.mini_batch_size or n
    order = list(range(n))
    mini_batches = [order[k : k + mini] for _ in range(cfg.trainer.ppo_epochs)
                    for k in range(0, n, mini)]  # fmt: skip
    lr = lr_at(iteration, cfg.trainer.iterations, cfg.optim.lr, cfg.optim.min_lr,
               cfg.optim.warmup_iterations, cfg.optim.decay)  # fmt: skip
    results = group.call("update", _samples(dock, True), mini_batches, lr)
    reporting = [r for r in results if r]
    metrics = {k: sum(r[k] for r in reporting) / len(reporting) for k in reporting[0]}
    metrics["actor/lr"] = lr
    return metrics


def validate(group, val: tuple[list[list[int]], list[str]], cfg: GRPOConfig, acc_part: str) -> dict:
    """Greedy pass@1 and, with trainer.val_n > 1, avg@k at the training temperature."""
    prompts, labels = val
    greedy = generate_and_score(
        group, prompts, labels, _sampling(cfg, cfg.trainer.seed, n=1, top_k=1)
    )
    sampled = None
    if cfg.trainer.val_n > 1:
        sampled_cfg = _sampling(cfg, cfg.trainer.seed + 1, n=cfg.trainer.val_n)
        sampled = generate_and_score(group, prompts, labels, sampled_cfg)
    fmt = next((p for p in cfg.reward.scorers if p.startswith("format")), None)
    return validation_metrics(greedy, sampled, acc_part, fmt)


def validation_metrics(
    greedy: list[list[dict]], sampled: list[list[dict]] | None, acc_part: str, fmt_part: str | None
) -> dict[str, float]:
    """val/accuracy (pass@1) and val/format of the greedy responses; val/avg_at_k and
    val/pass_at_k over the sampled ones when there are any. The numbers are cli/eval.py's
    (:mod:`mindspeed_rl.eval.metrics`): a sample is right when its accuracy part is >= 0.5."""
    from mindspeed_rl.eval.metrics import format_rate, greedy_metrics, sampled_metrics

    def part(groups: list[list[dict]], name: str) -> list[list[float]]:
        return [[s["parts"][name] for s in g] for g in groups]

    out = {"val/accuracy": greedy_metrics(part(greedy, acc_part))["pass@1"]}
    if fmt_part is not None:
        out["val/format"] = format_rate(part(greedy, fmt_part))
    if sampled is not None:
        k = min(len(g) for g in sampled)
        figures = sampled_metrics(part(sampled, acc_part), k)
        out["val/avg_at_k"] = figures[f"avg@{k}"]
        out["val/pass_at_k"] = figures[f"pass@{k}"]
    return out


def rollout_metrics(dock: TransferDock, acc_part: str) -> dict[str, float]:
    rewards = dock.get("reward")
    lengths = [len(r) for r in dock.get("response")]
    parts = dock.get("parts")
    m = {
        "reward/mean": sum(rewards) / len(rewards),
        "response_length/mean": sum(lengths) / len(lengths),
        "response_length/max": float(max(lengths)),
        "response_length/clip_ratio": sum(f == "length" for f in dock.get("finish")) / len(lengths),
    }
    # Token-mean negative log-prob of the sampled tokens by the engine. Sampling from the
    # policy itself (T=1, no top-k / top-p), its expectation is the policy's entropy along
    # the sampled responses: next to actor/entropy it shows whether the engine samples the
    # distribution the actor trains (bench/learning_parity.py measured both at 0.81).
    logprobs = [lp for row in dock.get("rollout_logprobs") for lp in row]
    if logprobs:
        m["rollout/nll"] = -sum(logprobs) / len(logprobs)
    for name in parts[0]:
        m[f"reward/{name}"] = sum(p[name] for p in parts) / len(parts)
    # The accuracy and format scorers under one name each, whichever scorers they are (curves,
    # console, runs compare).
    m[REWARD_ACCURACY] = m[f"reward/{acc_part}"]
    fmt = next((p for p in parts[0] if p.startswith("format")), None)
    if fmt:
        m[REWARD_FORMAT] = m[f"reward/{fmt}"]
    return m


# -- checkpoints -------------------------------------------------------------------------


def latest_checkpoint(root: Path) -> int | None:
    tracker = root / mf.TRACKER
    if not tracker.is_file():
        return None
    iteration = int(tracker.read_text().strip())
    if not (root / mf.iter_dir_name(iteration) / TRAINER_STATE).is_file():
        return None
    return iteration


def save_checkpoint(group, root: Path, iteration: int, loader: PromptLoader) -> None:
    """All ranks write into a temporary directory; it becomes iter_N by one rename, and the
    tracker moves last, so a kill at any point leaves the previous checkpoint usable."""
    tmp = root / f".tmp-{mf.iter_dir_name(iteration)}"
    shutil.rmtree(tmp, ignore_errors=True)
    group.call("save", str(tmp), iteration)
    state = {"iteration": iteration, "loader": loader.state_dict()}
    (tmp / mf.iter_dir_name(iteration) / TRAINER_STATE).write_text(json.dumps(state))
    final = root / mf.iter_dir_name(iteration)
    shutil.rmtree(final, ignore_errors=True)
    (tmp / mf.iter_dir_name(iteration)).rename(final)
    shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / mf.TRACKER, f"{iteration}\n")


# -- the run -----------------------------------------------------------------------------


def prepare_initial_checkpoint(cfg: GRPOConfig, out: Path) -> Path:
    """The Megatron checkpoint training starts from (converted from HF on first use)."""
    if cfg.model.load_dir:
        return resolve(cfg.model.load_dir)
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    init = out / "init_mcore"
    if mf.TRACKER not in {p.name for p in init.glob("*")}:
        # In the HF checkpoint's own dtype, not model.params_dtype: the optimizer's fp32 main
        # params start from these values (training.optimizer.init_main_params).
        hf_to_mcore(resolve(cfg.model.hf_dir), init, tp=cfg.model.tp, pp=cfg.model.pp,
                    overwrite=True)  # fmt: skip
    return init


def _val_set(cfg: GRPOConfig) -> tuple[list[list[int]], list[str]] | None:
    if not cfg.data.val_prefix or not cfg.trainer.val_interval:
        return None
    ds = PromptDataset(resolve(cfg.data.val_prefix))
    rows = range(min(len(ds), cfg.data.val_prompts))
    return [ds.prompt_ids(i) for i in rows], [ds.label(i) for i in rows]


def resolve_assistant_prefix(cfg: GRPOConfig) -> str:
    """The assistant prefix responses are scored with: the config's, else the one the training
    set was preprocessed with; a held-out set built with another template is refused."""
    if cfg.data.assistant_prefix is not None:
        return cfg.data.assistant_prefix
    prefix = PromptDataset(resolve(cfg.data.train_prefix)).summary.get("assistant_prefix", "")
    if cfg.data.val_prefix:
        val = PromptDataset(resolve(cfg.data.val_prefix)).summary.get("assistant_prefix", "")
        if val != prefix:
            raise UserError(
                f"data.val_prefix was preprocessed with assistant prefix {val!r} but "
                f"data.train_prefix with {prefix!r}; preprocess both with the same template"
            )
    return prefix


def startup_summary(cfg: GRPOConfig, config_name: str, load_dir: Path, resume: int | None,
                    train_rows: int, val_rows: int) -> list[str]:  # fmt: skip
    """What a run is about to do, in a few lines: model, layout, data, batch, where output goes."""
    from mindspeed_rl.plan.memory import total_params
    from mindspeed_rl.utils.console import logs_dir

    _, meta = mf.read_meta(load_dir)
    spec, m, res = meta.spec, cfg.model, cfg.resources
    name = Path(m.hf_dir).name if m.hf_dir else load_dir.name
    dp = res.world_size // (m.tp * m.pp)
    vpp = f" x {m.virtual_pipeline_stages} virtual" if m.virtual_pipeline_stages > 1 else ""
    optimizer = "distributed" if cfg.optim.use_distributed_optimizer else "replicated"
    recompute = f", {m.recompute_granularity} recompute" if m.recompute_granularity else ""
    out = resolve(cfg.trainer.output_dir)
    val = f"; held-out {val_rows} ({cfg.data.val_prefix})" if val_rows else ""
    start = f"resuming after iteration {resume}" if resume else "from the start"
    logs = "shown here (--verbose)" if cfg.logging.verbose else f"in {shown(logs_dir(out))}/"
    engines = plural(res.world_size // cfg.rollout.infer_tp, "engine")
    return [
        f"mindspeed-rl GRPO: {config_name} -> {shown(out)}",
        f"  model   {name}: {spec.family}, {spec.num_layers} layers, hidden {spec.hidden_size}, "
        f"{total_params(spec) / 1e6:.1f}M parameters, {m.params_dtype}",
        f"  layout  {res.world_size} {get_kind(cfg)} ranks on {plural(res.nnodes, 'node')}: "
        f"train TP{m.tp} PP{m.pp}{vpp} DP{dp} ({optimizer} optimizer{recompute}); "
        f"rollout {cfg.rollout.engine} TP{cfg.rollout.infer_tp} x {engines}",
        f"  data    train {train_rows} prompts ({cfg.data.train_prefix}){val}",
        f"  run     {cfg.trainer.iterations} iterations x {cfg.data.prompts_per_iteration} prompts "
        f"x {cfg.sampling.n} samples, responses <= {cfg.sampling.max_tokens} tokens, {start}",
        f"  logs    what vLLM, megatron-core and Ray print: {logs}",
    ] + ([f"  note    {note}"] if (note := dtype_note(cfg)) else [])


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
    from mindspeed_rl.trainer.metrics import VAL_ACCURACY, VAL_FORMAT, load_metrics

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
    cfg: GRPOConfig, config_name: str = "grpo", console: TextIO | None = None
) -> dict[str, float]:
    """Run GRPO as configured; returns the last iteration's metrics. Console lines (summary,
    progress, checkpoints) go to ``console`` (default stderr)."""
    from mindspeed_rl.accelerator import hide_expected_cpu_notices
    from mindspeed_rl.trainer.cluster import WorkerGroup

    began = time.perf_counter()
    hide_expected_cpu_notices()
    cfg.data.assistant_prefix = resolve_assistant_prefix(cfg)
    out = resolve(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.logging.dir = str(resolve(cfg.logging.dir))
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    load_dir = prepare_initial_checkpoint(cfg, out)
    ckpt_root = out / "checkpoints"
    ckpt_root.mkdir(exist_ok=True)
    if not (ckpt_root / mf.HF_META_DIR).is_dir():
        shutil.copytree(load_dir / mf.HF_META_DIR, ckpt_root / mf.HF_META_DIR)
    resume = latest_checkpoint(ckpt_root) if cfg.trainer.resume == "auto" else None
    loader = PromptLoader(PromptLoaderConfig(
        data_prefix=str(resolve(cfg.data.train_prefix)),
        batch_size=cfg.data.prompts_per_iteration, seed=cfg.data.seed,
    ))  # fmt: skip
    val = _val_set(cfg)
    logger = MetricsLogger(cfg.logging, total_iterations=cfg.trainer.iterations,
                           resume_iteration=resume, run_config=to_dict(cfg),
                           console_stream=console)  # fmt: skip
    train_rows = len(PromptDataset(resolve(cfg.data.train_prefix)))
    for line in startup_summary(cfg, config_name, load_dir, resume, train_rows,
                                len(val[0]) if val else 0):  # fmt: skip
        logger.message(line)
    try:
        ready = time.perf_counter()
        group = WorkerGroup(cfg, load_dir, ckpt_root / mf.HF_META_DIR)
        try:
            nodes = len({p["node_id"] for p in group.placement})
            logger.message(f"workers ready in {duration(time.perf_counter() - ready)} "
                           f"({len(group.placement)} ranks on {plural(nodes, 'node')})")  # fmt: skip
            (out / "placement.json").write_text(json.dumps(group.placement, indent=2))
            start = 1
            if resume is not None:
                state = json.loads(
                    (ckpt_root / mf.iter_dir_name(resume) / TRAINER_STATE).read_text()
                )
                group.call("load", str(ckpt_root), resume)
                loader.load_state_dict(state["loader"])
                start = resume + 1
            metrics = run_iterations(group, loader, val, logger, cfg, start, out)
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


def train_step(
    group, loader: PromptLoader, cfg: GRPOConfig, iteration: int, t: Timer, synced: bool
) -> tuple[TransferDock, dict[str, float], dict[str, float]]:
    """One iteration's phases, each timed by ``t``: sync (unless the engines already hold the
    current weights), rollout, to_train (engines asleep, training state back), log-probs,
    update. Returns the batch, the update's metrics and the rollout's extra metrics."""
    updates_per_batch = cfg.trainer.ppo_epochs * (
        cfg.samples_per_iteration // (cfg.trainer.mini_batch_size or cfg.samples_per_iteration)
    )
    if not synced:
        with t("sync"):
            group.call("to_rollout")
    with t("rollout"):
        dock, extra = rollout(group, loader, cfg, iteration)
    with t("to_train"):
        group.call("to_train")
    shape_rewards(dock, cfg)
    with t("logprobs"):
        compute_logprobs(group, dock, cfg, updates_per_batch)
    compute_advantages(dock, cfg)
    with t("update"):
        actor = update(group, dock, cfg, iteration)
    return dock, actor, extra


def run_iterations(
    group,
    loader: PromptLoader,
    val: tuple[list[list[int]], list[str]] | None,
    logger: MetricsLogger,
    cfg: GRPOConfig,
    start: int,
    out: Path,
) -> dict[str, float]:
    """Iterations ``start`` .. ``trainer.iterations``: sync -> rollout -> reward -> log-probs ->
    advantages -> update, validation and checkpoints on their intervals."""
    ckpt_root = out / "checkpoints"
    acc_part = accuracy_part(cfg)
    metrics: dict[str, float] = {}
    in_rollout = False  # the engines already hold the current weights (after validation)
    for iteration in range(start, cfg.trainer.iterations + 1):
        t = Timer()
        with t("step"):
            if val and iteration == 1:
                if not in_rollout:
                    with t("sync"):
                        group.call("to_rollout")
                    in_rollout = True
                with t("validation"):
                    logger.log(0, validate(group, val, cfg, acc_part))
            dock, actor, extra = train_step(group, loader, cfg, iteration, t, in_rollout)
            in_rollout = False
        tokens = sum(len(p) + len(r) for p, r in zip(dock.get("prompt"), dock.get("response")))
        metrics = {**rollout_metrics(dock, acc_part), **actor, **extra,
                   **{f"timing/{k}": v for k, v in t.seconds.items()},
                   "perf/tokens_per_s": tokens / t.seconds["step"]}  # fmt: skip
        logger.log(iteration, metrics)
        _write_samples(out, iteration, dock)
        if val and iteration % cfg.trainer.val_interval == 0:
            group.call("to_rollout")
            in_rollout = True
            logger.log(iteration, validate(group, val, cfg, acc_part))
        interval = cfg.trainer.save_interval
        save_now = iteration == cfg.trainer.iterations or (interval and iteration % interval == 0)
        if save_now:
            if in_rollout:
                group.call("to_train")  # checkpoints hold the optimizer state, on device
                in_rollout = False
            save_checkpoint(group, ckpt_root, iteration, loader)
            logger.message(f"checkpoint {shown(ckpt_root / mf.iter_dir_name(iteration))}")
    return metrics


def accuracy_part(cfg: GRPOConfig) -> str:
    """The reward part that says whether an answer is right: the first non-format scorer."""
    acc_part = next((p for p in cfg.reward.scorers if not p.startswith("format")), None)
    return acc_part or next(iter(cfg.reward.scorers))


def _write_samples(out: Path, iteration: int, dock: TransferDock) -> None:
    """A few responses per iteration, to read what the policy writes."""
    path = out / "samples.jsonl"
    rows = [{"iteration": iteration, "reward": r, "text": x}
            for r, x in list(zip(dock.get("reward"), dock.get("text")))[:4]]  # fmt: skip
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
