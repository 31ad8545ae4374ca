"""Score a checkpoint on held-out sets the way R1-Zero reports are made.

python cli/eval.py --model DIR [--model ...] --data NAME_OR_PREFIX [--data ...] [--n 8] [--k 1 --k 4]
                   [--temperature 0.6] [--top-p 0.95] [--max-tokens N] [--iteration N] [--template NAME]
                   [--engine vllm|torch] [--infer-tp T] [--out DIR] [--limit N]
python cli/eval.py --model DIR [--model ...] --suite r1zero        # the R1-Zero report's table
python cli/eval.py --model RUN/checkpoints --every 200 --suite r1zero   # every 200th checkpoint
python cli/eval.py --model DIR --suite math        # GSM8K, MATH-500, AMC23, AIME24, AIME25

DIR is an HF model directory or a Megatron checkpoint (cli/convert_ckpt.py hf2mcore's output
or a training run's checkpoints/, any TP/PP; exported to a temporary HF directory first).
--data is a preprocessed prefix (its summary names the template: --template must agree), a
.jsonl of problem/answer (or question/answer, problem/solution) rows rendered with --template,
or a name: data/NAME/test when preprocessed, else a bundled set (gsm8k).

Every prompt gets a greedy response (pass@1); with --n > 1 also n samples at --temperature /
--top-p (avg@k, the unbiased pass@k, maj@k for each --k, default k = n). Prints a table per
dataset and writes DIR/metrics.json and DIR/samples_NAME.jsonl (prompt, response, score,
reasons). With --infer-tp > 1 run it under torchrun --nproc-per-node T (vLLM only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindspeed_rl.errors import HelpFormatter, UserError, cli_entry  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="HF dir or Megatron checkpoint; repeatable (one table row each)")  # fmt: skip
    parser.add_argument("--data", action="append", default=[], metavar="NAME_OR_PREFIX",
                        help="held-out set; repeatable")  # fmt: skip
    parser.add_argument("--map-keys", action="append", default=[], metavar="FIELD=KEY",
                        help="a raw --data file's fields: question=KEY and label=KEY (default: "
                        "guessed from problem/answer, problem/solution, question/answer)")  # fmt: skip
    parser.add_argument("--suite", help="a named suite instead of --data/--n/--k "
                        "(r1zero: MATH-500 pass@1, AIME24 avg@24, GPQA Diamond avg@4; math: GSM8K "
                        "and MATH-500 pass@1, AMC23, AIME24, AIME25 avg@16)")  # fmt: skip
    parser.add_argument("--suite-data", action="append", default=[], metavar="NAME=PREFIX",
                        help="read a suite's set NAME from PREFIX instead of data/NAME/test")  # fmt: skip
    parser.add_argument("--every", type=int, default=None,
                        help="with --model RUN/checkpoints: every checkpoint whose iteration "
                        "is a multiple of this")  # fmt: skip
    parser.add_argument("--n", type=int, default=1, help="samples per prompt besides greedy")
    parser.add_argument("--k", type=int, action="append", default=[],
                        help="k of avg@k / pass@k / maj@k, <= n; repeatable (default: n)")  # fmt: skip
    parser.add_argument("--temperature", type=float, default=0.6, help="of the --n samples")
    parser.add_argument("--top-p", type=float, default=0.95, help="of the --n samples")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="response length limit (default: the training run's "
                        "sampling.max_tokens for a run's hf/ or checkpoints/, else 1024)")  # fmt: skip
    parser.add_argument("--iteration", type=int, default=None,
                        help="which iteration of a Megatron checkpoint (default: the newest)")  # fmt: skip
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85,
                        help="share of device memory vLLM may use on accelerators")  # fmt: skip
    parser.add_argument("--template", help="prompt template (configs/model/templates.json)")
    parser.add_argument("--scorer", help="accuracy scorer (default: gsm8k for GSM8K-style "
                        "and arithmetic sets, countdown for Countdown, else math)")  # fmt: skip
    parser.add_argument("--engine", choices=["vllm", "torch"], default="vllm")
    parser.add_argument("--infer-tp", type=int, default=1, help="vLLM tensor-parallel size")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None,
                        help="inference dtype (default: fp32 on CPU, bf16 on accelerators)")  # fmt: skip
    parser.add_argument("--limit", type=int, help="first N prompts of each set")
    parser.add_argument("--seed", type=int, default=0, help="prompt i samples with seed + i")
    parser.add_argument("--batch", type=int, default=64, help="prompts per engine call")
    parser.add_argument("--kv-cache-gb", type=int, default=2, help="vLLM KV cache on CPU, GiB")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/eval/MODEL)")
    return parser


def _map_keys(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        field, sep, key = pair.partition("=")
        if not sep or not key or field not in ("question", "label"):
            raise UserError(f"--map-keys {pair!r}: expected question=KEY or label=KEY")
        out[field] = key
    return out


def model_name(model: Path, iteration: int | None) -> str:
    """How a model is named in tables and output folders: a run's ``hf/`` or ``checkpoints/``
    by its run (two runs' ``hf/`` must not collide), a chosen iteration after ``@``."""
    path = model.resolve()
    name = f"{path.parent.name}/{path.name}" if path.name in ("hf", "checkpoints") else path.name
    return name if iteration is None else f"{name}@{iteration}"


def _rank_and_world(infer_tp: int, engine: str) -> tuple[int, int]:
    """This process's rank; under --infer-tp > 1, joins torchrun's process group."""
    if infer_tp < 1:
        raise UserError(f"--infer-tp must be >= 1, got {infer_tp}")
    if infer_tp == 1:
        return 0, 1
    if engine != "vllm":
        raise UserError("--infer-tp > 1 needs --engine vllm; the torch engine runs one process")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != infer_tp:
        raise UserError(
            f"--infer-tp {infer_tp} runs one process per rank: start it with "
            f"torchrun --nproc-per-node {infer_tp} cli/eval.py ... (WORLD_SIZE is {world})"
        )
    from mindspeed_rl.accelerator.device import init_distributed

    init_distributed()
    return int(os.environ["RANK"]), world


def _table(results: dict[str, dict]) -> str:
    columns = sorted({k for r in results.values() for k in r["metrics"]}, key=_column_order)
    header = ["dataset", "prompts", *columns, "seconds"]
    rows = [[name, str(r["prompts"]), *(f"{r['metrics'][c]:.4g}" if c in r["metrics"] else "-"
             for c in columns), f"{r['seconds']:.0f}"] for name, r in results.items()]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _column_order(name: str) -> tuple[int, int, str]:
    kinds = ["greedy_pass@1", "greedy_", "avg@", "pass@", "maj@", "format_rate", "mean_length"]
    kind = next((i for i, k in enumerate(kinds) if name.startswith(k)), len(kinds))
    k = name.rsplit("@", 1)[-1]
    return kind, int(k) if k.isdigit() else 0, name


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mindspeed_rl.eval import run, suites
    from mindspeed_rl.eval.run import EvalSettings

    settings = EvalSettings(
        n=args.n, ks=args.k, temperature=args.temperature, top_p=args.top_p,
        max_tokens=args.max_tokens, seed=args.seed, batch=args.batch, scorer=args.scorer,
    )  # fmt: skip
    if args.scorer:
        from mindspeed_rl.rewards.registry import resolve_scorer

        try:
            resolve_scorer(args.scorer)
        except ValueError as err:
            raise UserError(f"--scorer: {err}") from None
    if bool(args.suite) == bool(args.data):
        raise UserError("give the held-out sets with --data NAME (repeatable) or --suite NAME")
    suite = suites.get_suite(args.suite) if args.suite else None
    where = suites.parse_suite_data(args.suite_data, suite)
    sets = ([(where.get(s.data, s.data), replace(settings, n=s.n, ks=s.ks)) for s in suite]
            if suite else [(spec, settings) for spec in args.data])  # fmt: skip
    models: list[tuple[Path, int | None]] = []
    for model in args.model:
        if args.every:
            models += suites.checkpoint_models(model, args.every)
        else:
            models.append((model, args.iteration))
    # One model: --out is its folder (default runs/eval/MODEL). Several, or a suite: --out
    # (default runs/eval, or runs/eval/suite_NAME) holds a folder per model.
    several = len(models) > 1 or suite is not None
    root = args.out or (Path("runs") / "eval" / (f"suite_{args.suite}" if suite else ""))
    rank, world = _rank_and_world(args.infer_tp, args.engine)
    reports = {}
    for model, iteration in models:
        name = model_name(model, iteration)
        if name in reports:  # two runs' hf/ folders: keep both rows
            name = f"{name} ({len(reports) + 1})"
        safe = name.replace("@", "_").replace("/", "_").replace(" ", "_")
        out = root / safe if several else (args.out or Path("runs") / "eval" / safe)
        with run.shared_workdir(rank, world) as work:
            reports[name] = _evaluate(args, sets, work, rank, world, model, iteration, out)
    if suite and rank == 0:
        from mindspeed_rl.utils.fs import atomic_write_text

        columns = [s.column for s in suite]
        # The report's datasets are in the suite's order.
        rows = {name: {s.column: d["metrics"].get(s.metric)
                       for s, d in zip(suite, r["datasets"].values())}
                for name, r in reports.items()}  # fmt: skip
        table = suites.markdown_table(columns, rows)
        atomic_write_text(root / "table.md", table + "\n")
        atomic_write_text(root / "suite.json", json.dumps(
            {"suite": args.suite, "columns": columns, "rows": rows, "reports": reports},
            indent=2) + "\n")  # fmt: skip
        print(table)
        print(f"wrote {root / 'table.md'} and {root / 'suite.json'}")
    return 0


def _evaluate(
    args: argparse.Namespace, sets: list, work: Path, rank: int, world: int, model: Path,
    iteration: int | None, out: Path,
) -> dict:  # fmt: skip
    """Evaluate ``model`` on ``sets`` ((data spec, settings) pairs); rank 0 writes the report
    and samples under the model's output folder and returns the report. A Megatron
    checkpoint is exported once, by rank 0, into ``work`` (which every rank sees)."""
    from mindspeed_rl.accelerator import get_accelerator
    from mindspeed_rl.data.tokenization import load_hf_tokenizer
    from mindspeed_rl.eval import run
    from mindspeed_rl.rewards import RewardConfig
    from mindspeed_rl.rewards.samples import SampleScorer
    from mindspeed_rl.rollout import RolloutConfig, SamplingConfig
    from mindspeed_rl.utils.fs import atomic_write_text

    hf_dir, kind = run.on_rank0(lambda: run.resolve_model(model, work, iteration), rank, world)
    tokenizer = load_hf_tokenizer(hf_dir)
    if sets[0][1].max_tokens is None:
        tokens, why = run.default_max_tokens(model)
        sets = [(spec, replace(s, max_tokens=tokens)) for spec, s in sets]
        if rank == 0 and why != "the default":
            print(f"eval: responses <= {tokens} tokens ({why}; --max-tokens sets it)",
                  file=sys.stderr)  # fmt: skip
    settings = sets[0][1]
    trained = run.trained_template(model)
    map_keys = _map_keys(args.map_keys)
    datasets = [
        run.load_eval_data(
            spec, args.template, hf_dir, args.limit, trained[0] if trained else None, map_keys
        )  # fmt: skip
        for spec, _ in sets
    ]
    settings_of = {data.name: s for data, (_, s) in zip(datasets, sets)}
    for data in datasets:
        run.check_template(model, data)
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise UserError(f"--data names the same dataset twice ({', '.join(names)})")
    config = json.loads((hf_dir / "config.json").read_text())
    longest = max(len(p) for d in datasets for p in d.prompts)
    max_model_len = longest + settings.max_tokens
    positions = config.get("max_position_embeddings")
    if positions and max_model_len > positions:
        raise UserError(
            f"the longest prompt ({longest} tokens) plus --max-tokens {settings.max_tokens} "
            f"exceeds the model's {positions} positions; lower --max-tokens"
        )
    dtype = args.dtype or get_accelerator().default_dtype
    rollout = RolloutConfig(engine=args.engine, infer_tp=args.infer_tp, dtype=dtype,
                            max_model_len=max_model_len, kv_cache_gb=args.kv_cache_gb,
                            gpu_memory_utilization=args.gpu_memory_utilization)  # fmt: skip
    started = time.time()
    engine = run.build_engine(hf_dir, rollout)
    load_s = time.time() - started
    results: dict[str, dict] = {}
    try:
        for data in datasets:
            settings = settings_of[data.name]
            acc = run.scorer_for(data, settings.scorer)
            scorers = {acc: 1.0, run.FORMAT_SCORER: 0.0} if acc != run.FORMAT_SCORER else {acc: 1.0}
            began = time.time()
            reward = RewardConfig(scorers=scorers, timeout_s=5.0, accuracy=acc,
                                  format=run.FORMAT_SCORER)  # fmt: skip
            fmt = reward.format_scorer
            with SampleScorer(reward, tokenizer, data.assistant_prefix) as scorer:
                rollout = run.LocalRollout(engine, scorer)
                greedy_sampling = SamplingConfig(n=1, top_k=1, max_tokens=settings.max_tokens,
                                                 seed=settings.seed)  # fmt: skip
                greedy = run.generate_scored(rollout, data, greedy_sampling,
                                             f"{data.name} greedy", settings.batch)  # fmt: skip
                sampled = None
                if settings.n > 1:
                    sampling = SamplingConfig(n=settings.n, temperature=settings.temperature,
                                              top_p=settings.top_p, max_tokens=settings.max_tokens,
                                              seed=settings.seed + 1)  # fmt: skip
                    sampled = run.generate_scored(rollout, data, sampling,
                                                  f"{data.name} n={settings.n}", settings.batch)  # fmt: skip
            metrics = run.metrics_of(greedy, sampled, settings.ks, acc, fmt)
            seconds = time.time() - began
            results[data.name] = {
                "prompts": len(data.prompts), "metrics": metrics, "seconds": round(seconds, 1),
                "n": settings.n, "ks": settings.ks,
                "source": data.source, "template": data.template, "scorer": acc,
            }  # fmt: skip
            if rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                prompts = tokenizer.batch_decode(data.prompts, skip_special_tokens=False)
                rows = chain(run.sample_rows(data, greedy, prompts, acc, fmt, greedy=True),
                             run.sample_rows(data, sampled or [], prompts, acc, fmt))  # fmt: skip
                run.write_jsonl(out / f"samples_{data.name}.jsonl", rows)
    finally:
        engine.shutdown()
    report = {
            "model": str(model), "iteration": iteration, "model_kind": kind, "engine": args.engine,
            "infer_tp": args.infer_tp, "dtype": dtype,
            "temperature": settings.temperature, "top_p": settings.top_p,
            "max_tokens": settings.max_tokens, "seed": settings.seed,
            "engine_load_seconds": round(load_s, 1), "datasets": results,
    }  # fmt: skip
    if rank == 0:
        atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
        print(_table(results))
        print(f"wrote {out / 'metrics.json'} and samples_*.jsonl")
    return report


if __name__ == "__main__":
    sys.exit(main())
