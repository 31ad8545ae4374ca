"""cli/eval.py's defaults follow the training run the model came from."""

from __future__ import annotations

import json

import pytest

from mindspeed_rl.errors import UserError
from mindspeed_rl.eval.run import default_max_tokens, resolve_model


def test_max_tokens_default_is_the_training_runs(tmp_path):
    run = tmp_path / "run"
    (run / "hf").mkdir(parents=True)
    assert default_max_tokens(run / "hf") == (1024, "the default")
    (run / "config.json").write_text(json.dumps({"sampling": {"max_tokens": 4096}}))
    assert default_max_tokens(run / "hf") == (4096, "the training run's sampling.max_tokens")
    assert default_max_tokens(run / "checkpoints")[0] == 4096


def test_a_chosen_iteration_of_a_megatron_checkpoint(tmp_path, tiny_qwen2_dir):
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    hf_dir, kind = resolve_model(ckpt, tmp_path / "work", iteration=1)
    assert kind == "megatron" and (hf_dir / "config.json").is_file()
    with pytest.raises(UserError, match="has no iter_0000007; it has iter_0000001"):
        resolve_model(ckpt, tmp_path / "work2", iteration=7)
    with pytest.raises(UserError, match="--iteration applies to a Megatron checkpoint"):
        resolve_model(tiny_qwen2_dir, tmp_path / "work3", iteration=1)


def test_a_runs_hf_folder_is_named_by_its_run(tmp_path):
    import sys

    from tests.conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "cli"))
    from eval import model_name

    assert model_name(tmp_path / "run_a" / "hf", None) == "run_a/hf"
    assert model_name(tmp_path / "run_b" / "checkpoints", 200) == "run_b/checkpoints@200"
    assert model_name(tmp_path / "Qwen2.5-7B", None) == "Qwen2.5-7B"
