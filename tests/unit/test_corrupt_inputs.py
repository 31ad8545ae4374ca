"""Damaged input files get one line naming the file (a UserError), never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from mindspeed_rl.errors import UserError


def test_damaged_prompt_datasets(tmp_path):
    from mindspeed_rl.data.indexed import PromptDataset, write_prompt_dataset

    prefix = tmp_path / "ds"
    write_prompt_dataset(prefix, [([1, 2, 3] * 10, "a"), ([4] * 50, "bb")], {})
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def damaged(name: str, content: bytes, message: str) -> None:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=message):
            PromptDataset(prefix)
        (tmp_path / name).write_bytes(files[name])

    bin_, idx = files["ds_prompt.bin"], files["ds_prompt.idx"]
    damaged(
        "ds_prompt.bin", bin_[: len(bin_) // 2], r"ds_prompt.bin: \d+ bytes but its index needs"
    )
    damaged("ds_prompt.idx", idx[:20], r"ds_prompt.idx/.bin: damaged")
    damaged("ds_summary.json", b"{oops", r"ds_summary.json: not valid JSON")
    assert len(PromptDataset(prefix)) == 2


def test_damaged_hf_checkpoints(tmp_path, tiny_qwen2_dir):
    from mindspeed_rl.checkpoint.hf_io import INDEX_NAME, HFCheckpointReader

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen2_dir, model)
    weights = next(model.glob("*.safetensors"))
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 3])
    with pytest.raises(UserError, match=rf"{weights.name}: not a readable safetensors file"):
        HFCheckpointReader(model)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        HFCheckpointReader(model)
    weights.write_bytes(good)
    index = model / INDEX_NAME
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(UserError, match="not a safetensors index"):
        HFCheckpointReader(model)
    index.write_text(json.dumps({"weight_map": {"w": "../../etc/passwd"}}))
    with pytest.raises(UserError, match="points to '../../etc/passwd'"):
        HFCheckpointReader(model)
    index.write_text(json.dumps({"weight_map": {"w": "absent.safetensors"}}))
    with pytest.raises(UserError, match="absent.safetensors, which is missing"):
        HFCheckpointReader(model)


def test_damaged_megatron_rank_file(tmp_path, tiny_qwen2_dir):
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    ckpt = tmp_path / "mcore"
    hf_to_mcore(tiny_qwen2_dir, ckpt)
    rank = mf.rank_file(ckpt, 1, 0, 0, 1)
    rank.write_bytes(rank.read_bytes()[:100])
    with pytest.raises(UserError, match=r"model_optim_rng.pt: not a readable checkpoint file"):
        mf.read_meta(ckpt)


def test_an_output_folder_never_replaces_its_input_or_the_current_folder(
    tmp_path, monkeypatch, tiny_qwen2_dir
):
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    model = tmp_path / "work" / "model"
    shutil.copytree(tiny_qwen2_dir, model)
    config = (model / "config.json").read_text()
    for save in (tmp_path / "work", model):
        with pytest.raises(UserError, match="contains the input it reads"):
            hf_to_mcore(model, save, overwrite=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="contains the current folder"):
        hf_to_mcore(model, ".", overwrite=True)
    assert (model / "config.json").read_text() == config


def test_prepare_smollm2_never_deletes_a_folder_it_did_not_write(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, str(repo / "tools" / "prepare_smollm2.py"), "--out",
                           str(mine)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "was not written by this tool" in proc.stderr
    assert (mine / "keep.txt").read_text() == "mine"
