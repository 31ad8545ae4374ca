"""Bad input to cli/convert_ckpt.py: one line on stderr, exit 2, no output directory left."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CLI = [sys.executable, str(REPO_ROOT / "cli" / "convert_ckpt.py")]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def _assert_user_error(proc: subprocess.CompletedProcess, needle: str, out: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_missing_load_dir(tmp_path):
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", tmp_path / "nope", "--save-dir", out)
    _assert_user_error(proc, "does not exist", out)


def test_empty_load_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", tmp_path / "empty", "--save-dir", out)
    _assert_user_error(proc, "is empty", out)


def test_unsupported_architecture(tmp_path, tiny_llama_dir):
    model = tmp_path / "gpt2ish"
    shutil.copytree(tiny_llama_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", model, "--save-dir", out)
    _assert_user_error(proc, "unsupported architecture 'GPT2LMHeadModel'", out)
    assert "LlamaForCausalLM" in proc.stderr and "Qwen2ForCausalLM" in proc.stderr


@pytest.mark.parametrize(
    ("tp", "pp", "needle"),
    [
        (3, 1, "does not divide the model's attention heads (4)"),
        (4, 1, "does not divide the model's KV heads (2)"),
        (1, 8, "PP=8 is larger than the model's layer count (4)"),
        (1, 3, "PP=3 does not divide the model's layer count (4)"),
    ],
)
def test_bad_parallel_layout(tmp_path, tiny_qwen2_dir, tp, pp, needle):
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", tiny_qwen2_dir, "--save-dir", out, "--tp", tp, "--pp", pp)
    _assert_user_error(proc, needle, out)


def test_tp_not_dividing_ffn(tmp_path, tiny_llama_dir):
    model = tmp_path / "odd-ffn"
    shutil.copytree(tiny_llama_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(intermediate_size=511)
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", model, "--save-dir", out, "--tp", 2)
    _assert_user_error(proc, "does not divide the model's FFN hidden size (511)", out)


def test_mcore2hf_on_non_checkpoint(tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    proc = _run("mcore2hf", "--load-dir", tiny_llama_dir, "--save-dir", out)
    _assert_user_error(proc, "is not a Megatron checkpoint", out)


def test_mcore2hf_with_missing_rank_file(tmp_path, tiny_qwen2_dir):
    ckpt = tmp_path / "mcore"
    assert (
        _run(
            "hf2mcore", "--load-dir", tiny_qwen2_dir, "--save-dir", ckpt, "--tp", 2, "--pp", 2
        ).returncode
        == 0
    )
    shutil.rmtree(ckpt / "iter_0000001" / "mp_rank_01_001")
    out = tmp_path / "out"
    proc = _run("mcore2hf", "--load-dir", ckpt, "--save-dir", out)
    _assert_user_error(proc, "rank file(s) missing", out)
    assert "mp_rank_01_001" in proc.stderr


def test_refuses_non_empty_save_dir(tmp_path, tiny_qwen2_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = _run("hf2mcore", "--load-dir", tiny_qwen2_dir, "--save-dir", out)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_config_that_does_not_match_weights(tmp_path, tiny_llama_dir):
    model = tmp_path / "wrong-config"
    shutil.copytree(tiny_llama_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(intermediate_size=1024)
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    proc = _run("hf2mcore", "--load-dir", model, "--save-dir", out)
    _assert_user_error(proc, "config.json implies", out)
