"""Preprocessing runs: every shipped dataset config on fixture files, the real GSM8K file, and
bad input (errors naming file, line and key; skipped-row counts; nothing half-written)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mindspeed_rl.data.arithmetic import ArithmeticConfig, generate_arithmetic
from mindspeed_rl.data.countdown import CountdownConfig, generate_countdown
from mindspeed_rl.data.indexed import PromptDataset, dataset_files
from mindspeed_rl.data.preprocess import DATASET_CONFIGS, load_dataset_config, preprocess
from mindspeed_rl.data.templates import get_template
from mindspeed_rl.errors import UserError

GSM8K_DIR = Path(__file__).resolve().parents[2] / "assets" / "gsm8k"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def deepscaler_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    rows = [
        {"problem": f"Compute {i} + {i}.", "answer": str(2 * i), "solution": f"\\boxed{{{2 * i}}}"}
        for i in range(12)
    ]
    rows.append({"problem": "Half of one?", "solution": "It is \\boxed{\\frac{1}{2}}."})
    path = tmp_path / "deepscaler.json"
    path.write_text(json.dumps(rows))  # a JSON array, as DeepScaleR ships
    return path, [str(2 * i) for i in range(12)] + ["\\frac{1}{2}"]


def math_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    answers = ["\\left( 3, \\frac{\\pi}{2} \\right)", "10", "\\frac{\\sqrt{3}}{2}", "[-2,7]"]
    table = pa.table(
        {
            "problem": [f"Problem {i}" for i in range(len(answers))],
            "solution": [f"Work. \\boxed{{0}} no, $\\boxed{{{a}}}$" for a in answers],
            "level": ["Level 5"] * len(answers),
        }
    )
    path = tmp_path / "math.parquet"
    pq.write_table(table, path)
    return path, answers


def gsm8k_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    lines = (GSM8K_DIR / "test.jsonl").read_text().splitlines()[:40]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    labels = [json.loads(x)["answer"].rsplit("####", 1)[1].strip().replace(",", "") for x in lines]
    return path, labels


def countdown_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    rows = generate_countdown(CountdownConfig(rows=30, seed=5))
    path = write_jsonl(tmp_path / "countdown.jsonl", rows)
    return path, [json.dumps({"nums": r["nums"], "target": r["target"]}) for r in rows]


def arithmetic_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    _, test = generate_arithmetic(ArithmeticConfig(seed=5, test_rows=30))
    return write_jsonl(tmp_path / "arithmetic.jsonl", test), [r["label"] for r in test]


def gpqa_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    import csv

    from mindspeed_rl.data.handlers import shuffled_options

    path = tmp_path / "gpqa_diamond.csv"
    header = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
              "Incorrect Answer 3", "Subdomain"]  # fmt: skip
    labels = []
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(10):
            question = f"Which value, of several, is {i}?\nSecond line."
            row = [question, str(i), str(i + 1), str(i + 2), f"{i}, or not"]
            writer.writerow([*row, "Physics"])
            labels.append(shuffled_options(question, row[1], row[2:5])[1])
    return path, labels


def math500_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    answers = ["\\frac{14}{3}", "10", "\\left( 3, \\frac{\\pi}{2} \\right)", "p - q"]
    rows = [{"problem": f"Problem {i}", "solution": f"... \\boxed{{{a}}}", "answer": a,
             "subject": "Algebra", "level": 3} for i, a in enumerate(answers)]  # fmt: skip
    return write_jsonl(tmp_path / "math500.jsonl", rows), answers


def aime24_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    rows = [{"problem": f"AIME problem {i}", "answer": str(100 + i)} for i in range(5)]
    return write_jsonl(tmp_path / "aime24.jsonl", rows), [str(100 + i) for i in range(5)]


def aime25_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    rows = [{"problem": f"AIME 2025 problem {i}", "answer": str(70 + i), "id": i} for i in range(3)]
    return write_jsonl(tmp_path / "aime25.jsonl", rows), [str(70 + i) for i in range(3)]


def amc23_fixture(tmp_path: Path) -> tuple[Path, list[str]]:
    # AMC answers as some public copies write them: JSON numbers (27.0), written out as text.
    answers = [27.0, 3.0, 0.5]
    rows = [{"problem": f"AMC problem {i}", "answer": a} for i, a in enumerate(answers)]
    return write_jsonl(tmp_path / "amc23.jsonl", rows), ["27.0", "3.0", "0.5"]


FIXTURES = {
    "arithmetic": arithmetic_fixture,
    "deepscaler": deepscaler_fixture,
    "math": math_fixture,
    "gsm8k": gsm8k_fixture,
    "countdown": countdown_fixture,
    "gpqa_diamond": gpqa_fixture,
    "math500": math500_fixture,
    "aime24": aime24_fixture,
    "aime25": aime25_fixture,
    "amc23": amc23_fixture,
}


def test_every_shipped_config_has_a_fixture():
    assert sorted(p.stem for p in DATASET_CONFIGS.glob("*.yaml")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_shipped_config_preprocesses(tmp_path, name, smollm2_dir):
    source, labels = FIXTURES[name](tmp_path)
    prefix = tmp_path / "out" / name
    config = load_dataset_config(name, [f"input={source}", f"output_prefix={prefix}", "workers=1"])
    summary = preprocess(config)
    assert summary["rows_read"] == summary["rows_kept"] == len(labels)
    assert summary["rows_dropped"] == {"bad_row": 0, "too_long": 0}
    dataset = PromptDataset(prefix)
    assert [dataset.label(i) for i in range(len(dataset))] == labels
    assert json.loads(Path(f"{prefix}_summary.json").read_text()) == summary == dataset.summary


def test_real_gsm8k_train_with_two_workers(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    prefix = tmp_path / "gsm8k_train"
    summary = preprocess(load_dataset_config("gsm8k", [f"output_prefix={prefix}"]))
    rows = [json.loads(x) for x in (GSM8K_DIR / "train.jsonl").read_text().splitlines()]
    assert summary["rows_read"] == summary["rows_kept"] == len(rows) == 7473
    dataset = PromptDataset(prefix)
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    template = get_template("qwen_r1")
    for i in (0, 1234, 7472):
        expected = tokenizer(template.render(rows[i]["question"]), add_special_tokens=False)
        assert dataset.prompt_ids(i) == expected["input_ids"]
        assert dataset.label(i) == rows[i]["answer"].rsplit("####", 1)[1].strip().replace(",", "")


def test_tokenizer_chat_template_and_limit(tmp_path, smollm2_dir):
    source, _ = gsm8k_fixture(tmp_path)
    prefix = tmp_path / "chat"
    overrides = [f"input={source}", f"output_prefix={prefix}", "template=tokenizer_r1", "limit=5"]
    summary = preprocess(load_dataset_config("gsm8k", overrides))
    assert summary["rows_read"] == 5
    assert PromptDataset(prefix).prompt_ids(0)[:1] == [1]  # <|im_start|>, from the chat template


def run(tmp_path: Path, source: Path, *overrides: str, handler: str = "gsm8k") -> dict:
    prefix = tmp_path / "out" / "ds"
    base = [f"input={source}", f"output_prefix={prefix}", f"handler={handler}", "workers=1"]
    return preprocess(load_dataset_config("gsm8k", base + list(overrides)))


GOOD = {"question": "Q?", "answer": "so #### 5"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"question": "Q?", "answer": "#### 5"}\n{"question": "Q?"}\n',
            r"bad.jsonl:2: row has no key 'answer'.*map_keys",
        ),
        (
            b'{"question": "Q?", "answer": "#### 5"}\n{"question": "\xff"}\n',
            r"bad.jsonl:2: not valid UTF-8",
        ),
        (
            b'{"question": "Q?", "answer": "#### 5"}\n\n{"question": \n',
            r"bad.jsonl:3: invalid JSON",
        ),
        (
            b'{"question": "Q?", "answer": "five"}\n',
            r"bad.jsonl:1: 'answer' does not end with '#### <number>'",
        ),
        (b"", r"bad.jsonl: the dataset has no rows"),
        (b"\n\n", r"bad.jsonl: the dataset has no rows"),
    ],
)
def test_bad_rows_stop_with_file_line_and_key(tmp_path, smollm2_dir, content, message):
    source = tmp_path / "bad.jsonl"
    source.write_bytes(content)
    with pytest.raises(UserError, match=message):
        run(tmp_path, source)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_skip_bad_rows_counts_them(tmp_path, smollm2_dir):
    source = tmp_path / "mixed.jsonl"
    good = json.dumps(GOOD).encode()
    source.write_bytes(b"\n".join([good, b'{"question": "Q"}', b"\xff", b"{", good, b"[]"]) + b"\n")
    summary = run(tmp_path, source, "skip_bad_rows=true")
    assert (summary["rows_read"], summary["rows_kept"]) == (6, 2)
    assert summary["rows_dropped"] == {"bad_row": 4, "too_long": 0}
    assert summary["bad_rows"][0] == f"{source}:2: row has no key 'answer'"
    assert summary["dropped_why"] == {
        "row has no key 'answer'": 1,
        "not valid UTF-8": 1,
        "invalid JSON": 1,
        "expected a JSON object, got list": 1,
    }


def test_everything_bad_or_too_long(tmp_path, smollm2_dir):
    source = write_jsonl(tmp_path / "d.jsonl", [{"q": "x"}] * 3)
    with pytest.raises(UserError, match="none of the 3 rows could be used"):
        run(tmp_path, source, "skip_bad_rows=true")
    source = write_jsonl(tmp_path / "d.jsonl", [GOOD] * 3)
    with pytest.raises(UserError, match="all 3 prompts are longer than max_prompt_length=10"):
        run(tmp_path, source, "max_prompt_length=10")
    summary = run(
        tmp_path, write_jsonl(tmp_path / "e.jsonl", [GOOD, {**GOOD, "question": "Q " * 500}])
    )
    assert summary["rows_dropped"]["too_long"] == 1
    assert summary["dropped_why"] == {"longer than 512 tokens": 1}


def test_unknown_names(tmp_path, smollm2_dir):
    source = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(UserError, match="unknown template 'qwen_r9'"):
        run(tmp_path, source, "template=qwen_r9")
    with pytest.raises(UserError, match="unknown handler 'gsm9k'"):
        run(tmp_path, source, handler="gsm9k")
    with pytest.raises(UserError, match="tokenizer directory not found"):
        run(tmp_path, source, f"tokenizer={tmp_path / 'none'}")


def test_a_failed_run_keeps_the_previous_dataset(tmp_path, smollm2_dir):
    prefix = tmp_path / "out" / "ds"
    run(tmp_path, write_jsonl(tmp_path / "d.jsonl", [GOOD] * 4))
    before = {p: p.read_bytes() for p in dataset_files(prefix)}
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(GOOD).encode() + b"\n{broken\n")
    with pytest.raises(UserError):
        run(tmp_path, bad)
    assert {p: p.read_bytes() for p in dataset_files(prefix)} == before
    assert sorted(p.name for p in prefix.parent.iterdir()) == sorted(p.name for p in before)
