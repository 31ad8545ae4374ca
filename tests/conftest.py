"""Shared fixtures: tiny random HF models and the bundled SmolLM2 directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOLLM2_DIR = REPO_ROOT / "models" / "SmolLM2-135M-Instruct"

# Keep each test process (and its spawned ranks) to the machine's cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MINDSPEED_RL_DEVICE", "cpu")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    if not (SMOLLM2_DIR / ".complete").is_file():
        pytest.fail(
            f"{SMOLLM2_DIR} is missing: run `python tools/prepare_smollm2.py` "
            "(scripts/test.sh does it)"
        )
    return SMOLLM2_DIR


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_model

    return make_tiny_model("qwen2", tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_model

    return make_tiny_model("qwen3", tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny_qwen3_wide_heads_dir(tmp_path_factory) -> Path:
    """Qwen3 whose head_dim (64) is not hidden / heads (128 / 4 = 32), with tied embeddings:
    q and o are [256, 128] and [128, 256], as in Qwen3-0.6B / 1.7B / 4B."""
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(
        "qwen3",
        tmp_path_factory.mktemp("tiny-qwen3-wide"),
        hidden_size=128,
        num_attention_heads=4,
        tie_word_embeddings=True,
    )


@pytest.fixture(scope="session")
def tiny_qwen3_moe_dir(tmp_path_factory) -> Path:
    """Qwen3-MoE: 4 experts of width 64, top-2 renormalised; head_dim 64 with hidden 128 /
    4 heads (as in Qwen3-30B-A3B, q is wider than hidden), untied."""
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(
        "qwen3_moe",
        tmp_path_factory.mktemp("tiny-qwen3-moe"),
        hidden_size=128,
        num_attention_heads=4,
    )
