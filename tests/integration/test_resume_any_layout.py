"""A training-state checkpoint (megatron-core dist_checkpointing) saved at one layout resumes
at another: the saving run takes 3 optimizer steps and saves after the first; a run at another
TP / PP / virtual stages / DP / EP, or with the other optimizer, loads that checkpoint and
takes the 2 remaining steps. Its losses, grad norms and final weights equal the unbroken
run's (fp32): model weights, Adam moments and step counts all came over."""

from __future__ import annotations

import pytest

from tests.integration.test_megatron_training import _max_rel_diff, _train

# Saved at TP1 PP1 DP2 with the distributed optimizer (each rank holds half of every moment).
RESUMES = {
    "same-layout": dict(tp=1, pp=1, dp=2),
    "tp2": dict(tp=2, pp=1),
    "pp2": dict(tp=1, pp=2),
    "pp2-vpp2": dict(tp=1, pp=2, vpp=2),
}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, tiny_qwen2_dir):
    return _train(
        tmp_path_factory.mktemp("saved"), tiny_qwen2_dir, tp=1, pp=1, dp=2, distopt=True,
        save_after=1,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(RESUMES))
def test_resume_at_another_layout_continues_the_run(tmp_path, tiny_qwen2_dir, unbroken, name):
    resumed = _train(
        tmp_path, tiny_qwen2_dir, steps=2, resume=str(unbroken["out"] / "checkpoint"),
        distopt=True, **RESUMES[name],
    )  # fmt: skip
    after_save = {**unbroken, "loss": unbroken["loss"][1:], "grad_norm": unbroken["grad_norm"][1:]}
    print(f"resume {name}: {_max_rel_diff(resumed, after_save):.3g}")
    assert _max_rel_diff(resumed, after_save) <= 1e-5


def test_replicated_optimizer_resumes_at_tp2(tmp_path, tiny_qwen2_dir):
    # The replicated optimizer (every DP rank holds all moments) saved at DP2, resumed at TP2.
    saved = _train(tmp_path / "saved", tiny_qwen2_dir, tp=1, pp=1, dp=2, save_after=1)
    resumed = _train(tmp_path / "resumed", tiny_qwen2_dir, tp=2, pp=1, steps=2,
                     resume=str(saved["out"] / "checkpoint"))  # fmt: skip
    after_save = {**saved, "loss": saved["loss"][1:], "grad_norm": saved["grad_norm"][1:]}
    assert _max_rel_diff(resumed, after_save) <= 1e-5


def test_resume_from_the_init_is_a_different_run(tmp_path, tiny_qwen2_dir, unbroken):
    # The comparison can fail: the same 2 steps from the initial weights and fresh moments
    # (what a resume that loaded nothing would do) are far from the unbroken run's.
    fresh = _train(tmp_path, tiny_qwen2_dir, tp=2, pp=1, steps=2, distopt=True)
    after_save = {**unbroken, "loss": unbroken["loss"][1:], "grad_norm": unbroken["grad_norm"][1:]}
    assert _max_rel_diff(fresh, after_save) > 1e-3


def test_qwen3_moe_resumes_from_ep1_at_ep2(tmp_path, tiny_qwen3_moe_dir):
    # Saved with all 4 experts on each of 2 DP ranks, resumed with 2 experts per rank (EP2):
    # each rank reads its experts' weights and moments under their global indices.
    saved = _train(tmp_path / "saved", tiny_qwen3_moe_dir, tp=1, pp=1, dp=2, distopt=True,
                   save_after=1)  # fmt: skip
    resumed = _train(
        tmp_path / "resumed", tiny_qwen3_moe_dir, tp=1, pp=1, dp=2, ep=2, distopt=True,
        steps=2, resume=str(saved["out"] / "checkpoint"),
    )  # fmt: skip
    after_save = {**saved, "loss": saved["loss"][1:], "grad_norm": saved["grad_norm"][1:]}
    print(f"qwen3-moe EP1 -> EP2 resume: {_max_rel_diff(resumed, after_save):.3g}")
    assert _max_rel_diff(resumed, after_save) <= 1e-5


def test_tied_embeddings_saved_at_pp2_resume_at_dp2(tmp_path, tiny_llama_dir):
    # Llama ties its embeddings: at PP2 the last stage holds a copy of the embedding as its
    # output layer. The checkpoint keeps one embedding; a PP1 run (no copy) resumes from it.
    saved = _train(tmp_path / "saved", tiny_llama_dir, tp=1, pp=2, distopt=True, save_after=1)
    resumed = _train(tmp_path / "resumed", tiny_llama_dir, tp=1, pp=1, dp=2, distopt=True,
                     steps=2, resume=str(saved["out"] / "checkpoint"))  # fmt: skip
    after_save = {**saved, "loss": saved["loss"][1:], "grad_norm": saved["grad_norm"][1:]}
    assert _max_rel_diff(resumed, after_save) <= 1e-5


def test_mcore2hf_reads_a_training_checkpoint_and_refuses_a_damaged_one(
    tmp_path, tiny_qwen2_dir, unbroken
):
    # A trainer's checkpoints folder: iter_N/dist_ckpt, the tracker, hf_meta.
    import shutil

    from transformers import AutoModelForCausalLM

    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.checkpoint.convert import mcore_to_hf
    from mindspeed_rl.errors import UserError

    root = tmp_path / "checkpoints"
    shutil.copytree(unbroken["out"] / "checkpoint", root / "iter_0000001" / mf.TRAINING_STATE_DIR)
    shutil.copytree(
        unbroken["out"].parent / "mcore-tp1-pp1" / mf.HF_META_DIR, root / mf.HF_META_DIR
    )
    mf.write_tracker(root, 1)
    mcore_to_hf(root, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    initial = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    name = "model.layers.2.mlp.down_proj.weight"
    trained, start = hf.state_dict()[name], initial.state_dict()[name]
    # One Adam step at lr 1e-3 moved every weight by about the learning rate.
    assert 5e-4 < (trained - start).abs().mean() < 2e-3
    (next((root / "iter_0000001" / mf.TRAINING_STATE_DIR).glob("*.distcp"))).unlink()
    with pytest.raises(UserError, match=r"dist_ckpt: unreadable \(FileNotFoundError: .*distcp"):
        mcore_to_hf(root, tmp_path / "hf2")
    assert not (tmp_path / "hf2").exists()
