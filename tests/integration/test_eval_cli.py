"""cli/eval.py end to end on real tiny models: one-line refusals, engine parity, Megatron input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PARITY = "tests.integration.eval_fixtures:text_parity"
PROMPTS = 8


def _main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO_ROOT / "cli"))
    import importlib

    eval_cli = importlib.import_module("eval")
    return eval_cli.main(argv)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smollm2_dir) -> Path:
    # A random 2-layer model with SmolLM2's tokenizer: real prompts, fast generation.
    from tests.tiny_models import make_tiny_model

    # Qwen2 has untied embeddings: a random tied model repeats one token for every prompt.
    return make_tiny_model("qwen2", tmp_path_factory.mktemp("eval-model"), seed=3,
                           tokenizer_dir=smollm2_dir, num_layers=2, hidden_size=128)  # fmt: skip


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory) -> Path:
    # GSM8K questions (varied text: a random model's greedy responses differ between them),
    # in the problem / answer shape of MATH-500-style files.
    path = tmp_path_factory.mktemp("eval-data") / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _gsm8k_problems(0, PROMPTS)))
    return path


GSM8K_TEST = REPO_ROOT / "assets" / "gsm8k" / "test.jsonl"


def _gsm8k_problems(start: int, stop: int) -> list[dict]:
    """GSM8K test questions ``start:stop`` in the problem / answer shape of MATH-500, AIME and
    AMC files."""
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[start:stop]]
    return [{"problem": r["question"], "answer": r["answer"].split("####")[-1].strip()}
            for r in rows]  # fmt: skip


def _stand_ins(folder: Path, tokenizer: Path, files: dict[str, list[dict] | str]) -> dict[str, str]:
    """Each named set's stand-in file written (problem / answer rows as JSONL, or a GPQA CSV's
    text) and preprocessed by its shipped config: {set name: prefix}."""
    from mindspeed_rl.data.preprocess import load_dataset_config, preprocess

    prefixes = {}
    for name, content in files.items():
        source = folder / (f"{name}.csv" if isinstance(content, str) else f"{name}.jsonl")
        source.write_text(content if isinstance(content, str)
                          else "".join(json.dumps(r) + "\n" for r in content))  # fmt: skip
        prefix = folder / "data" / name / "test"
        preprocess(load_dataset_config(name, [
            f"input={source}", f"output_prefix={prefix}", f"tokenizer={tokenizer}",
            "template=chatml_r1_oneshot", "workers=1"]))  # fmt: skip
        prefixes[name] = str(prefix)
    return prefixes


GPQA_HEADER = "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"


@pytest.fixture(scope="module")
def prefix(jsonl, model_dir) -> str:
    from mindspeed_rl.data.preprocess import DatasetConfig, preprocess

    out = str(jsonl.parent / "sums_test")
    preprocess(DatasetConfig(input=str(jsonl), output_prefix=out, handler="generic",
                             map_keys={"question": "problem", "label": "answer"},
                             template="chatml_r1_oneshot", tokenizer=str(model_dir)))  # fmt: skip
    return out


def _eval(tmp_path: Path, name: str, *args: str) -> tuple[dict, list[dict]]:
    out = tmp_path / name
    assert _main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    (samples,) = out.glob("samples_*.jsonl")
    return report, [json.loads(line) for line in samples.read_text().splitlines()]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "no/such/model", "--data", "gsm8k"], "does not exist"),
        (["--data", "no_such_set"], "no such dataset"),
        (["--data", "PREFIX", "--template", "qwen_r1"], "preprocessed with template chatml_r1_oneshot"),
        (["--data", "JSONL"], "name the prompt template"),
        (["--data", "gsm8k", "--n", "4", "--k", "8"], "--k 8 is more than --n 4"),
        (["--data", "gsm8k", "--template", "no_such_template"], "unknown template"),
        (["--data", "gsm8k", "--template", "qwen_r1", "--infer-tp", "2"], "needs --engine vllm"),
        (["--data", "gsm8k", "--infer-tp", "2", "--engine", "vllm"], "torchrun --nproc-per-node 2"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(extra, needle, model_dir, prefix, jsonl, capsys):
    argv = [a.replace("PREFIX", prefix).replace("JSONL", str(jsonl)) for a in extra]
    if "--model" not in argv:
        argv = ["--model", str(model_dir), *argv]
    if "--engine" not in argv:
        argv += ["--engine", "torch"]
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert needle in err[0], err


def test_exit_status_of_the_real_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "cli/eval.py", "--model", str(tmp_path / "nothing"), "--data", "gsm8k"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("eval: error: --model")


def test_torch_and_vllm_give_the_same_greedy_pass_at_1(model_dir, prefix, tmp_path):
    common = ["--model", str(model_dir), "--data", prefix, "--scorer", PARITY,
              "--max-tokens", "12"]  # fmt: skip
    torch_report, torch_rows = _eval(tmp_path, "torch", *common, "--engine", "torch",
                                     "--n", "3", "--k", "1", "--k", "3")  # fmt: skip
    vllm_report, vllm_rows = _eval(tmp_path, "vllm", *common, "--engine", "vllm")
    torch_metrics = torch_report["datasets"]["sums_test"]["metrics"]
    vllm_metrics = vllm_report["datasets"]["sums_test"]["metrics"]
    # The scorer marks about half of random responses right: a real pass@1 to agree on.
    assert 0 < vllm_metrics["greedy_pass@1"] < 1, vllm_metrics
    assert torch_metrics["greedy_pass@1"] == vllm_metrics["greedy_pass@1"]
    greedy = [r for r in torch_rows if r["sample"] == "greedy"]
    assert [r["response"] for r in greedy] == [r["response"] for r in vllm_rows]
    # Greedy + 3 samples per prompt; every sampled metric at both k.
    assert len(torch_rows) == 4 * PROMPTS and len(vllm_rows) == PROMPTS
    assert {"avg@1", "pass@1", "avg@3", "pass@3", "maj@1", "maj@3"} <= set(torch_metrics)
    assert torch_metrics["pass@3"] >= torch_metrics["avg@3"]
    assert vllm_rows[0]["prompt"].endswith("<think>") and vllm_rows[0]["response"].startswith(
        "<think>"
    )


def test_megatron_checkpoint_equals_its_hf_export(model_dir, jsonl, tmp_path):
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    mcore = tmp_path / "mcore"
    hf_to_mcore(model_dir, mcore, tp=1, pp=2)
    common = ["--data", str(jsonl), "--template", "chatml_r1", "--scorer", PARITY,
              "--max-tokens", "10", "--engine", "torch"]  # fmt: skip
    hf_report, hf_rows = _eval(tmp_path, "hf", "--model", str(model_dir), *common)
    mc_report, mc_rows = _eval(tmp_path, "mc", "--model", str(mcore), *common)
    assert mc_report["model_kind"] == "megatron" and hf_report["model_kind"] == "hf"
    assert mc_report["datasets"] == {
        name: {**result, "seconds": mc_report["datasets"][name]["seconds"]}
        for name, result in hf_report["datasets"].items()
    }
    assert [r["response"] for r in mc_rows] == [r["response"] for r in hf_rows]


@pytest.mark.slow
def test_smollm2_gsm8k_torch_equals_vllm(smollm2_dir, tmp_path):
    # The bundled real model on 32 GSM8K test prompts: greedy responses (16 tokens, what fits
    # the time of a test on 2 cores) and pass@1 agree between the two engines.
    common = ["--model", str(smollm2_dir), "--data", "gsm8k", "--limit", "32",
              "--template", "chatml_r1_oneshot", "--max-tokens", "16"]  # fmt: skip
    torch_report, torch_rows = _eval(tmp_path, "torch", *common, "--engine", "torch")
    vllm_report, vllm_rows = _eval(tmp_path, "vllm", *common, "--engine", "vllm")
    assert len(vllm_rows) == 32
    assert [r["response"] for r in torch_rows] == [r["response"] for r in vllm_rows]
    assert (torch_report["datasets"]["gsm8k"]["metrics"]["greedy_pass@1"]
            == vllm_report["datasets"]["gsm8k"]["metrics"]["greedy_pass@1"])  # fmt: skip


def test_a_training_runs_model_keeps_its_template(model_dir, prefix, jsonl, tmp_path, capsys):
    # A run directory: config.json names the training set, whose summary names the template.
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "hf")
    (run / "config.json").write_text(json.dumps({"data": {"train_prefix": prefix}}))
    argv = ["--model", str(run / "hf"), "--data", str(jsonl), "--engine", "torch"]
    assert _main([*argv, "--template", "chatml_r1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on prompts of template chatml_r1_oneshot" in err[0], err
    # Without --template a raw file is rendered with the training template.
    report, rows = _eval(tmp_path, "default", *argv, "--max-tokens", "2", "--limit", "2")
    assert report["datasets"]["sums"]["template"] == "chatml_r1_oneshot"
    assert rows[0]["prompt"].endswith("<think>")


def test_the_r1zero_suite_table_from_one_command(model_dir, tmp_path, capsys):
    # Small generated stand-ins for MATH-500, AIME24 and GPQA Diamond (users bring the real
    # files), preprocessed with the shipped configs' handlers; two models, one row each.
    import shutil

    gpqa = GPQA_HEADER + "Which gas is noble?,Argon,Oxygen,Iron,Sodium\nWhat is 2 + 2?,4,3,5,22\n"
    prefixes = _stand_ins(tmp_path, model_dir, {
        "math500": _gsm8k_problems(0, 3), "aime24": _gsm8k_problems(3, 5), "gpqa_diamond": gpqa})  # fmt: skip
    where = [x for name, prefix in prefixes.items() for x in ("--suite-data", f"{name}={prefix}")]
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    out = tmp_path / "suite"
    argv = ["--model", str(model_dir), "--model", str(other), "--suite", "r1zero", *where,
            "--engine", "torch", "--max-tokens", "4", "--out", str(out)]  # fmt: skip
    assert _main(argv) == 0
    table = capsys.readouterr().out
    lines = (out / "table.md").read_text().splitlines()
    assert lines[0] == "| model | MATH-500 pass@1 | AIME24 avg@24 | GPQA Diamond avg@4 |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == [model_dir.name, "other"]
    assert lines[2] in table
    suite = json.loads((out / "suite.json").read_text())
    report = suite["reports"]["other"]
    _, aime, gpqa = report["datasets"].values()  # in the suite's order
    assert (aime["n"], aime["ks"], gpqa["n"], gpqa["scorer"]) == (24, [24], 4, "choice")
    for figure in suite["rows"]["other"].values():
        assert figure is not None and 0.0 <= figure <= 1.0
    # Same weights, same seeds: the two rows agree.
    assert suite["rows"]["other"] == suite["rows"][model_dir.name]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_smollm2_on_every_named_set_in_both_suites(smollm2_dir, tmp_path, capsys):
    # The bundled model through vLLM on small generated stand-ins of every named set (users
    # bring the real files): GSM8K, MATH-500, AMC23, AIME24 and AIME25 from GSM8K test
    # questions in each config's problem / answer shape, GPQA Diamond from a generated CSV,
    # each preprocessed by its shipped config. Both suites print their table, and every
    # figure is what the set's samples file says: the greedy rows' mean score for pass@1, the
    # sampled rows' mean for avg@k, with k samples per prompt.
    from mindspeed_rl.eval import suites

    files = {name: _gsm8k_problems(3 * k, 3 * k + 3)
             for k, name in enumerate(("math500", "amc23", "aime24", "aime25"))}  # fmt: skip
    gsm8k = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[12:15]]
    files["gsm8k"] = gsm8k  # GSM8K's own shape: question, answer ending in "#### n"
    files["gpqa_diamond"] = (GPQA_HEADER + "Which gas is a noble gas?,Argon,Oxygen,Nitrogen,"
                             "Chlorine\nWhat is 7 times 6?,42,36,48,13\n")  # fmt: skip
    prefixes = _stand_ins(tmp_path, smollm2_dir, files)
    for suite_name in ("math", "r1zero"):
        suite = suites.get_suite(suite_name)
        pairs = [f"{s.data}={prefixes[s.data]}" for s in suite]
        out = tmp_path / suite_name
        argv = ["--model", str(smollm2_dir), "--suite", suite_name,
                *(x for pair in pairs for x in ("--suite-data", pair)),
                "--engine", "vllm", "--max-tokens", "24", "--out", str(out)]  # fmt: skip
        assert _main(argv) == 0
        printed = capsys.readouterr().out
        table = (out / "table.md").read_text().splitlines()
        assert table[0] == "| model | " + " | ".join(s.column for s in suite) + " |"
        assert table[2].startswith(f"| {smollm2_dir.name} |") and table[2] in printed
        report = json.loads((out / "suite.json").read_text())
        (row,) = report["rows"].values()
        (datasets,) = (r["datasets"] for r in report["reports"].values())
        (model_out,) = [p for p in out.iterdir() if p.is_dir()]
        for s, name in zip(suite, datasets, strict=True):  # the report keeps the suite's order
            assert name.startswith(s.data)
            samples = [json.loads(x) for x in
                       (model_out / f"samples_{name}.jsonl").read_text().splitlines()]  # fmt: skip
            greedy = [r["score"] for r in samples if r["sample"] == "greedy"]
            sampled = [r["score"] for r in samples if r["sample"] != "greedy"]
            prompts = 2 if s.data == "gpqa_diamond" else 3
            assert len(greedy) == prompts and len(sampled) == prompts * (s.n if s.n > 1 else 0)
            want = _mean(sampled) if s.n > 1 else _mean(greedy)
            assert row[s.column] == pytest.approx(want), (suite_name, s.column)
            if s.data == "gpqa_diamond":  # the choice scorer read letters, not numbers
                assert all(r["label"] in "ABCD" for r in samples)


def test_map_keys_names_a_raw_files_fields(model_dir, tmp_path, capsys):
    source = tmp_path / "aime_like.jsonl"
    rows = [{"Problem": f"What is {i} + {i}?", "Answer": str(2 * i), "ID": i} for i in range(3)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--model", str(model_dir), "--data", str(source), "--template", "chatml_r1",
              "--engine", "torch", "--max-tokens", "2"]  # fmt: skip
    assert _main(common) == 2  # no usual shape to guess
    assert "cannot tell the fields" in capsys.readouterr().err
    assert _main([*common, "--map-keys", "prompt=Problem"]) == 2
    assert "expected question=KEY or label=KEY" in capsys.readouterr().err
    report, samples = _eval(tmp_path, "mapped", *common, "--map-keys", "question=Problem",
                            "--map-keys", "label=Answer")  # fmt: skip
    assert [s["label"] for s in samples] == ["0", "2", "4"]
    assert "What is 1 + 1?" in samples[1]["prompt"]


def _save_training_state(rank: int, world: int, init: str, root: str, iterations: list) -> None:
    """What the trainer writes at each iteration, for an untrained model: the training state
    (megatron-core dist_checkpointing, with the optimizer) and the trainer state file."""
    import torch

    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.training import checkpoint
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.model import DDPSettings, build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel

    initialize_model_parallel(1, 1)
    chunks, meta, _ = build_chunks(init, torch.float32, ddp=DDPSettings())
    optimizer = opt.build_optimizer(
        chunks, opt.AdamSettings(1e-3, 0.0, (0.9, 0.999), 1e-8, 1.0), torch.float32
    )
    for it in iterations:
        folder = Path(root) / mf.iter_dir_name(it)
        checkpoint.save(folder / mf.TRAINING_STATE_DIR, chunks, optimizer, meta)
        (folder / "trainer_state.json").write_text(json.dumps({"iteration": it, "loader": {}}))
    destroy_model_parallel()


def test_a_runs_checkpoints_evaluate_every_nth_like_the_hf_model(model_dir, jsonl, tmp_path):
    # --model RUN/checkpoints --every 2: the trainer's checkpoints 2 and 4 (not 3) are read
    # through megatron-core's dist_checkpointing and answer as the HF model they came from.
    import shutil

    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.checkpoint.convert import hf_to_mcore
    from mindspeed_rl.utils.spawn import run_ranks

    init = tmp_path / "init"
    hf_to_mcore(model_dir, init, params_dtype="fp32")
    root = tmp_path / "run" / "checkpoints"
    run_ranks(_save_training_state, 1, str(init), str(root), [2, 3, 4])
    shutil.copytree(init / mf.HF_META_DIR, root / mf.HF_META_DIR)
    mf.write_tracker(root, 4)
    common = ["--data", str(jsonl), "--template", "chatml_r1", "--scorer", PARITY,
              "--max-tokens", "10", "--engine", "torch"]  # fmt: skip
    _, hf_rows = _eval(tmp_path, "hf", "--model", str(model_dir), *common)
    out = tmp_path / "every"
    assert _main(["--model", str(root), "--every", "2", *common, "--out", str(out)]) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["run_checkpoints_2", "run_checkpoints_4"]
    for folder in folders:
        (samples,) = (out / folder).glob("samples_*.jsonl")
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        assert [r["response"] for r in rows] == [r["response"] for r in hf_rows]
