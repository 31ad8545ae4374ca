"""The data and reward CLIs as users run them: exit codes, one-line errors, outputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GSM8K_TEST = REPO / "assets" / "gsm8k" / "test.jsonl"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


@pytest.fixture
def gsm8k_sample(tmp_path) -> Path:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(GSM8K_TEST.read_text().splitlines()[:20]) + "\n")
    return path


def test_preprocess_cli(tmp_path, gsm8k_sample, smollm2_dir):
    prefix = tmp_path / "out" / "gsm8k"
    result = cli(
        "cli/preprocess_data.py",
        "gsm8k",
        f"input={gsm8k_sample}",
        f"output_prefix={prefix}",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "20 of 20 rows kept" in result.stdout
    assert Path(f"{prefix}_prompt.bin").is_file() and Path(f"{prefix}_label.idx").is_file()


def test_preprocess_cli_bad_row(tmp_path, smollm2_dir):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"question": "Q", "answer": "#### 1"}\n{"question": "Q"}\n')
    result = cli(
        "cli/preprocess_data.py", "gsm8k", f"input={source}", f"output_prefix={tmp_path / 'o'}"
    )
    assert_one_line_error(result, "preprocess_data: error:", f"{source}:2", "'answer'")
    assert not list(tmp_path.glob("o*"))


def test_example_script(tmp_path, gsm8k_sample, smollm2_dir):
    prefix = tmp_path / "gsm8k"
    result = subprocess.run(
        [
            "bash",
            "examples/data/preprocess_data.sh",
            "gsm8k",
            f"input={gsm8k_sample}",
            f"output_prefix={prefix}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(Path(f"{prefix}_summary.json").read_text())["rows_kept"] == 20
    usage = subprocess.run(
        ["bash", "examples/data/preprocess_data.sh"], cwd=REPO, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_generate_countdown_cli(tmp_path):
    out = tmp_path / "cd.jsonl"
    result = cli(
        "cli/generate_data.py", "countdown", "--rows", "50", "--seed", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 50 and {"nums", "target", "solution"} <= set(rows[0])
    bad = cli("cli/generate_data.py", "countdown", "--rows", "0", "--out", str(out))
    assert_one_line_error(bad, "rows must be >= 1")


def test_generate_arithmetic_cli(tmp_path):
    out = tmp_path / "arith"
    args = ("cli/generate_data.py", "arithmetic", "--first", "10:19", "--second", "1:5")
    result = cli(*args, "--test-rows", "30", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert len(test) == 30 and len(train) == 2 * 10 * 5 - 30
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    for row in train + test:
        a, op, b = row["question"].removeprefix("What is ").rstrip("?").split()
        assert int(row["label"]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    bad = cli(*args, "--test-rows", "100", "--out-dir", str(tmp_path / "bad"))
    assert_one_line_error(bad, "leaves no training questions")
    assert not (tmp_path / "bad").exists()
    bad = cli("cli/generate_data.py", "arithmetic", "--first", "ten", "--out-dir", str(out))
    assert_one_line_error(bad, "--first: expected MIN:MAX")


def test_score_cli(tmp_path):
    rows = [
        {"response": "<think>a</think><answer>\\dfrac{1}{2}</answer>", "label": "\\frac{1}{2}"},
        {"response": "<think>a</think><answer>3</answer>", "label": "4"},
        {"response": "\\boxed{x = 5}", "label": "5"},
        {"response": "<answer>9^{9^{9^{9}}}</answer>", "label": "5"},
    ]
    source = tmp_path / "gens.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.jsonl"
    result = cli(
        "cli/score.py",
        "--input",
        str(source),
        "--scorer",
        "math",
        "--scorer",
        "format=0.5",
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 4 and summary["accuracy"] == 0.5
    assert summary["mean_parts"]["format"] == 0.5
    scores = [json.loads(x) for x in out.read_text().splitlines()]
    assert [s["parts"]["math"] for s in scores] == [1.0, 0.0, 1.0, 0.0]
    assert scores[0]["total"] == 1.5


def test_score_cli_errors(tmp_path):
    source = tmp_path / "gens.jsonl"
    source.write_text('{"text": "x", "label": "1"}\n')
    assert_one_line_error(
        cli("cli/score.py", "--input", str(source), "--scorer", "math"),
        f"{source}:1",
        "'response'",
        "--response-key",
    )
    assert_one_line_error(
        cli("cli/score.py", "--input", str(source), "--scorer", "maths", "--response-key", "text"),
        "unknown scorer 'maths'",
    )
    source.write_text('{"text": "x", "label": "1"}\n{oops\n')
    assert_one_line_error(
        cli("cli/score.py", "--input", str(source), "--scorer", "math", "--response-key", "text"),
        f"{source}:2",
        "invalid JSON",
    )


def test_score_cli_refuses_a_folder_output_and_non_finite_scores(tmp_path):
    source = tmp_path / "gens.jsonl"
    source.write_text('{"response": "<answer>1</answer>", "label": "1"}\n')
    folder = tmp_path / "out"
    folder.mkdir()
    args = ("cli/score.py", "--input", str(source))
    assert_one_line_error(cli(*args, "--scorer", "math", "--output", str(folder)), "is a folder")
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*tmp*"))
    nan = cli(*args, "--scorer", "tests.unit.test_rewards_config:_nan_scorer")
    assert_one_line_error(nan, "gave nan for response 0")
