"""`train_grpo.py --preflight` on the CPU layouts: every phase of two short iterations, a save
and its resume, time and memory per phase; non-zero exit on a failure or over the budget."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import failure_report, run_env, train_command

pytestmark = pytest.mark.slow
PHASES = {"build", "sync", "rollout", "reward", "to_train", "logprobs", "update", "save", "resume"}
ROW = re.compile(r"^\s+(\w+)\s+([\d.]+(?: / [\d.]+)?)\s+([\d.]+) GB")


def _run_preflight(cmd: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """``cmd`` (a train_command) with --preflight, run to the end."""
    cmd = cmd[:2] + ["--preflight"] + cmd[2:]
    return subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=timeout)


def _table(stdout: str) -> dict[str, tuple[list[float], float]]:
    """phase -> (seconds of each run, peak GB) from the preflight's table."""
    rows = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1) in PHASES:
            rows[m.group(1)] = ([float(s) for s in m.group(2).split(" / ")], float(m.group(3)))
    return rows


def _check_passed(proc: subprocess.CompletedProcess, out) -> dict:
    assert proc.returncode == 0, failure_report(proc, out / "preflight")
    rows = _table(proc.stdout)
    assert set(rows) == PHASES, proc.stdout
    for phase, (seconds, peak) in rows.items():
        runs = 1 if phase in ("build", "save", "resume") else 2
        assert len(seconds) == runs and peak > 0.1, (phase, proc.stdout)
    assert proc.stdout.strip().splitlines()[-1].startswith("preflight: OK in "), proc.stdout
    assert len((proc.stdout + proc.stderr).strip().splitlines()) <= 20, proc.stdout
    # The preflight's checkpoints are removed; the run it checked has not started.
    assert not (out / "preflight" / "checkpoints").exists()
    assert not (out / "metrics.jsonl").exists()
    return rows


def test_preflight_of_the_quickstart_preset(tmp_path, smollm2_dir, gsm8k_prompts):
    from mindspeed_rl.accelerator import cpu_has_bf16_matmul

    out = tmp_path / "run"
    # As scripts/quickstart.sh runs the preset: fp32 on a CPU that would emulate bf16.
    dtypes = [] if cpu_has_bf16_matmul() else ["model.params_dtype=fp32", "rollout.dtype=fp32"]
    cmd = [sys.executable, str(REPO_ROOT / "cli" / "train_grpo.py"), "--preflight",
           "--config-name", "grpo_smollm2_cpu", f"trainer.output_dir={out}",
           f"data.train_prefix={gsm8k_prompts}", "data.val_prefix=''", "rollout.max_model_len=320", *dtypes]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=900)
    _check_passed(proc, out)
    # DP2 x micro-batch 8 with 8 samples per prompt: 2 prompts per iteration.
    assert "2 iterations x 2 prompts x 8 samples" in proc.stdout, proc.stdout
    # The run's starting checkpoint was converted where the run will look for it.
    assert (out / "init_mcore" / "latest_checkpointed_iteration.txt").is_file()


def test_preflight_tensor_parallel_train_and_rollout(
    tmp_path, tiny_qwen3_chat_model, gsm8k_prompts
):
    out = tmp_path / "run"
    # The GPU presets' training layout: TP with sequence parallelism, samples packed back to
    # back by a token budget.
    cmd = train_command(tiny_qwen3_chat_model, gsm8k_prompts, out, "model.tp=2",
                        "model.sequence_parallel=true", "rollout.infer_tp=2",
                        "trainer.pack_prompts=false", "trainer.max_tokens_per_micro_batch=512")  # fmt: skip
    proc = _run_preflight(cmd)
    _check_passed(proc, out)
    assert (
        "2 ranks train (TP2 PP1 DP1, replicated optimizer) and generate in turn (1 vllm "
        "engine of infer TP2)"
    ) in proc.stdout, proc.stdout


def test_preflight_with_a_generation_only_rank(tmp_path, tiny_chat_model, gsm8k_prompts):
    # One rank trains, one only generates: the weights go over their own group, and the
    # memory probe covers the generation rank too.
    out = tmp_path / "run"
    cmd = train_command(tiny_chat_model, gsm8k_prompts, out, "resources.devices_per_node=1",
                        "resources.rollout_workers=1", "algorithm.max_staleness=1")  # fmt: skip
    proc = _run_preflight(cmd)
    _check_passed(proc, out)
    assert (
        "2 cpu ranks on 1 node: 1 rank trains (TP1 PP1 DP1, replicated optimizer); 1 more "
        "only generates (1 vllm engine of infer TP1), the next batch while this one trains"
    ) in proc.stdout, proc.stdout
    assert "build" in proc.stdout and "(2 ranks)" in proc.stdout, proc.stdout


def test_preflight_pipeline_parallel_over_the_memory_budget(
    tmp_path, tiny_chat_model, gsm8k_prompts
):
    # plan predicts this tiny model fits 1.3 GB (so the run is not refused at start), but each
    # rank's process holds more than that (libraries, vLLM): every phase runs, then the
    # preflight fails on one line naming the phase and the budget.
    out = tmp_path / "run"
    cmd = train_command(tiny_chat_model, gsm8k_prompts, out, "model.pp=2",
                        "trainer.micro_batch_size=1", "resources.device_memory_gb=1.3")  # fmt: skip
    proc = _run_preflight(cmd)
    assert proc.returncode == 2, failure_report(proc, out / "preflight")
    assert set(_table(proc.stdout)) == PHASES, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "over resources.device_memory_gb=1.3" in lines[0], proc.stderr
    assert "2 ranks train (TP1 PP2 DP1" in proc.stdout


def test_preflight_refuses_a_layout_plan_rejects(tmp_path, tiny_chat_model, gsm8k_prompts):
    out = tmp_path / "run"
    cmd = train_command(tiny_chat_model, gsm8k_prompts, out, "resources.device_memory_gb=0.01")
    proc = _run_preflight(cmd, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.01" in lines[0], proc.stderr
    assert not (out / "preflight").exists()
