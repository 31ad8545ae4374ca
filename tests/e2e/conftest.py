"""Fixtures for end-to-end GRPO runs: a tiny model with the real tokenizer, real prompts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SMOLLM2_DIR

GSM8K_TEST = REPO_ROOT / "assets" / "gsm8k" / "test.jsonl"


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory, smollm2_dir) -> Path:
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(
        "llama", tmp_path_factory.mktemp("tiny-chat"), tokenizer_dir=smollm2_dir,
        num_layers=2, hidden_size=128,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_qwen3_chat_model(tmp_path_factory, smollm2_dir) -> Path:
    """A tiny Qwen3 (q/k norms; head_dim 64 with hidden 128 / 4 heads, untied) on SmolLM2's
    tokenizer, so it reads the same preprocessed prompts."""
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(
        "qwen3", tmp_path_factory.mktemp("tiny-qwen3-chat"), tokenizer_dir=smollm2_dir,
        num_layers=2, hidden_size=128, num_attention_heads=4,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_qwen3_moe_chat_model(tmp_path_factory, smollm2_dir) -> Path:
    """A tiny Qwen3-MoE (4 experts, top-2; head_dim 64 with hidden 128 / 4 heads) on
    SmolLM2's tokenizer."""
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(
        "qwen3_moe", tmp_path_factory.mktemp("tiny-qwen3-moe-chat"), tokenizer_dir=smollm2_dir,
        num_layers=2, hidden_size=128, num_attention_heads=4,
    )  # fmt: skip


@pytest.fixture(scope="session")
def gsm8k_prompts(tmp_path_factory) -> Path:
    """GSM8K test rows (the first 48) preprocessed with the R1 template."""
    out = tmp_path_factory.mktemp("gsm8k")
    cmd = [
        sys.executable, str(REPO_ROOT / "cli" / "preprocess_data.py"), "gsm8k",
        f"input={GSM8K_TEST}", f"output_prefix={out}/gsm8k", f"tokenizer={SMOLLM2_DIR}",
        "limit=48", "max_prompt_length=256",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out / "gsm8k"


def _toy_preset(out: Path, scorer: str = "tests.e2e.toy_scorers:vowel_ratio") -> Path:
    """The CPU preset with the toy scorer (a dotted scorer name cannot be a Hydra override)."""
    import yaml

    preset = yaml.safe_load((REPO_ROOT / "configs" / "grpo_smollm2_cpu.yaml").read_text())
    preset.pop("defaults")
    preset["model"] = yaml.safe_load(
        (REPO_ROOT / "configs" / "model" / "smollm2_135m.yaml").read_text()
    )
    preset["reward"]["scorers"] = {scorer: 1.0}
    config_dir = out.parent / f"{out.name}-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "grpo_toy.yaml").write_text(yaml.safe_dump(preset))
    return config_dir


def train_command(
    model: Path, prompts: Path, out: Path, *overrides: str,
    scorer: str = "tests.e2e.toy_scorers:vowel_ratio",
) -> list[str]:  # fmt: skip
    return [
        sys.executable, str(REPO_ROOT / "cli" / "train_grpo.py"),
        "--config-path", str(_toy_preset(out, scorer)), "--config-name", "grpo_toy",
        f"model.hf_dir={model}", f"data.train_prefix={prompts}", "data.val_prefix=''",
        f"trainer.output_dir={out}", "data.prompts_per_iteration=2", "sampling.n=4",
        "sampling.max_tokens=16", "trainer.micro_batch_size=2", "trainer.val_interval=0",
        "rollout.max_model_len=320", "reward.workers=1", "optim.lr=1e-3", "logging.tensorboard=true", *overrides,
    ]  # fmt: skip


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["RAY_DEDUP_LOGS"] = "0"
    return env


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def failure_report(proc: subprocess.CompletedProcess, out: Path) -> str:
    """What a failed run said: its console, then the tails of the logs it wrote under
    <out>/logs/ (the console alone holds one line since library output goes there)."""
    parts = [f"exit {proc.returncode}; console:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"]
    for log in sorted((out / "logs").glob("*.log")):
        parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
