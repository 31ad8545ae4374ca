"""The GRPO loop (driver/grpo.run_iterations) against an in-process worker group: no Ray, no
vLLM, no megatron. The fake group answers the same typed API as workers/group.WorkerGroup and
records every call, so the phase order, dynamic-sampling refill, mini-batching, validation
and save intervals are checked in seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.config.grpo import GRPOConfig
from mindspeed_rl.data.indexed import write_prompt_dataset
from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
from mindspeed_rl.driver.grpo import TRAINER_STATE, ValSet, latest_checkpoint, run_iterations
from mindspeed_rl.driver.metrics import LoggingConfig, MetricsLogger, load_metrics
from mindspeed_rl.rewards.base import RewardResult
from mindspeed_rl.rewards.registry import RewardConfig
from mindspeed_rl.sample import Batch, Finish, Sample

G = 4


class FakeGroup:
    """Responses ``[prompt[0], j]``; the reward depends on the label: ``all`` right, ``none``
    right, ``half`` (even j) right. Phases are checked the way HybridMemory checks them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.phase = "train"
        self.updates: list[tuple[Batch, list[list[int]], float]] = []

    def _need(self, phase: str) -> None:
        assert self.phase == phase, f"called in phase {self.phase}, needs {phase}"

    def to_rollout(self) -> None:
        if self.phase != "rollout":
            self.calls.append(("sync",))
            self.phase = "rollout"

    def to_train(self) -> None:
        if self.phase != "train":
            self.calls.append(("sleep",))
            self.phase = "train"

    def generate(self, prompts, labels, sampling, version):
        self._need("rollout")
        self.calls.append(("generate", len(prompts), sampling.n, version))
        return [
            [Sample(prompt_ids=p, label=lab, group=i, version=version, response_ids=[p[0], j],
                    rollout_logprobs=[-0.5, -0.25], finish=Finish.STOP) for j in range(sampling.n)]
            for i, (p, lab) in enumerate(zip(prompts, labels))
        ]  # fmt: skip

    def score(self, samples, scorers=None):
        """The labels say what is right; the part is named after the accuracy scorer asked
        for (``math`` by default), so a set scored by another scorer shows under its name."""
        self.calls.append(("score", len(samples)) + ((scorers,) if scorers else ()))
        accuracy = next(n for n in (scorers or {"math": 1.0}) if n != "format")
        out = []
        for s in samples:
            j = s.response_ids[1]
            right = {"all": 1.0, "none": 0.0, "half": float(j % 2 == 0)}[s.label]
            reward = RewardResult(right, {accuracy: right, "format": 1.0},
                                  {accuracy: "", "format": ""})  # fmt: skip
            out.append(replace(s, reward=reward, text=f"answer {j}"))
        return out

    def logprobs(self, batch, reference=False):
        self._need("train")
        self.calls.append(("ref_logprobs" if reference else "old_logprobs", len(batch)))
        return [[-0.5] * len(s.response_ids) for s in batch]

    def update(self, batch, mini_batches, lr):
        self._need("train")
        self.calls.append(("update", len(batch)))
        self.updates.append((batch, mini_batches, lr))
        return {"actor/loss": 0.5, "actor/grad_norm": 1.0}

    def save(self, root: Path, iteration: int) -> None:
        self._need("train")
        self.calls.append(("save", iteration))
        (root / mf.iter_dir_name(iteration) / mf.TRAINING_STATE_DIR).mkdir(parents=True)

    def load(self, root: Path, iteration: int) -> None:
        self.calls.append(("load", iteration))

    placement = [{"rank": 0, "node_id": "n0"}]

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


def _loader(tmp_path: Path, labels: list[str], batch: int) -> PromptLoader:
    prefix = tmp_path / "data" / "train"
    write_prompt_dataset(prefix, [([10 + i, 1, 2], lab) for i, lab in enumerate(labels)], {})
    return PromptLoader(PromptLoaderConfig(data_prefix=str(prefix), batch_size=batch, seed=3))


def _cfg(tmp_path: Path, **trainer) -> GRPOConfig:
    cfg = GRPOConfig()
    cfg.sampling.n = G
    cfg.data.prompts_per_iteration = 2
    cfg.loss.kl_coef = 0.0
    cfg.reward = RewardConfig(scorers={"math": 1.0, "format": 0.0})
    cfg.optim.lr = 1e-3
    for key, value in trainer.items():
        setattr(cfg.trainer, key, value)
    cfg.logging = LoggingConfig(dir=str(tmp_path / "run"), tensorboard=False, console=False)
    return cfg


def _run(cfg: GRPOConfig, group: FakeGroup, loader: PromptLoader, tmp_path: Path, val=()):
    out = tmp_path / "run"
    with MetricsLogger(cfg.logging, total_iterations=cfg.trainer.iterations) as logger:
        last = run_iterations(group, loader, list(val), logger, cfg, 1, out)
    return last, load_metrics(out / "metrics.jsonl")


def test_phase_order_validation_and_save_intervals(tmp_path):
    cfg = _cfg(tmp_path, iterations=3, val_interval=2, save_interval=2)
    cfg.loss.kl_coef = 0.01
    group = FakeGroup()
    val = [ValSet("val", [[1, 2], [3, 4], [5, 6]], ["all", "none", "half"], 1)]
    last, rows = _run(cfg, group, _loader(tmp_path, ["half"] * 8, 2), tmp_path, val)
    val_calls = [("generate", 3, 1, 0), ("score", 3)]

    def it(version):
        return [("generate", 2, G, version), ("score", 2 * G), ("sleep",),
                ("ref_logprobs", 2 * G), ("update", 2 * G)]  # fmt: skip

    assert group.calls == [
        ("sync",), *val_calls, *it(0),            # validation before training, then iteration 1
        ("sync",), *it(1),                        # iteration 2
        ("sync",), *val_calls, ("sleep",), ("save", 2),  # validation, checkpoint at 2
        ("sync",), *it(2), ("save", 3),           # iteration 3, the last: checkpoint
    ]  # fmt: skip
    val_rows = [r for r in rows if "val/accuracy" in r]
    assert [r["iteration"] for r in val_rows] == [0, 2]
    # Greedy: "all" right, "none" wrong, "half" answers j=0, right.
    assert val_rows[0]["val/accuracy"] == pytest.approx(2 / 3)
    assert val_rows[0]["val/format"] == 1.0
    assert last["reward/accuracy"] == 0.5 and last["reward/mean"] == 0.5
    assert {"timing/rollout", "timing/reward", "timing/update"} <= set(last)
    root = tmp_path / "run" / "checkpoints"
    assert latest_checkpoint(root) == 3
    state = json.loads((root / mf.iter_dir_name(2) / TRAINER_STATE).read_text())
    assert state["iteration"] == 2 and "loader" in state


def test_advantages_mini_batches_and_old_logprobs(tmp_path):
    cfg = _cfg(tmp_path, iterations=1, mini_batch_size=G, ppo_epochs=2)
    group = FakeGroup()
    _run(cfg, group, _loader(tmp_path, ["half"] * 4, 2), tmp_path)
    assert ("old_logprobs", 2 * G) in group.calls  # 4 updates from one batch: old log-probs
    batch, mini_batches, lr = group.updates[0]
    assert mini_batches == [[0, 1, 2, 3], [4, 5, 6, 7]] * 2
    assert lr == cfg.optim.lr
    assert [s.group for s in batch] == [0] * G + [1] * G
    assert all(s.old_logprobs == [-0.5, -0.5] and s.ref_logprobs is None for s in batch)
    # GRPO: (r - mean) / (unbiased std + eps); half right in each group -> +-0.866.
    advantages = [s.advantage for s in batch]
    assert advantages[:G] == pytest.approx([0.8660, -0.8660] * 2, abs=1e-3)
    assert sum(advantages) == pytest.approx(0.0, abs=1e-5)


def test_dynamic_sampling_keeps_informative_groups_and_refills(tmp_path):
    cfg = _cfg(tmp_path, iterations=1)
    cfg.algorithm.dynamic_sampling = True
    cfg.algorithm.max_extra_rollouts = 5
    group = FakeGroup()
    # Half the prompts are informative; within 6 rounds of 2 (12 of 16 prompts) at least 4 are.
    labels = ["half", "all", "none", "all"] * 2 + ["half"] * 8
    last, _ = _run(cfg, group, _loader(tmp_path, labels, 2), tmp_path)
    batch, _, _ = group.updates[0]
    assert len(batch) == 2 * G
    assert all(s.label == "half" for s in batch)
    assert [s.group for s in batch] == [0] * G + [1] * G
    # Rounds stop as soon as two informative groups are kept: replay the loader's order.
    replay, kept, expected = _loader(tmp_path / "replay", labels, 2), 0, 0
    while kept < 2:
        kept += sum(lab == "half" for lab in replay.next_batch().labels)
        expected += 1
    assert sum(c[0] == "generate" for c in group.calls) == expected == last["dapo/rounds"]
    assert last["dapo/informative_groups"] == 2.0


def test_dynamic_sampling_fills_with_uninformative_groups_when_rounds_run_out(tmp_path):
    cfg = _cfg(tmp_path, iterations=1)
    cfg.algorithm.dynamic_sampling = True
    cfg.algorithm.max_extra_rollouts = 1
    group = FakeGroup()
    last, _ = _run(cfg, group, _loader(tmp_path, ["all"] * 6, 2), tmp_path)
    batch, _, _ = group.updates[0]
    assert len(batch) == 2 * G and all(s.advantage == 0.0 for s in batch)
    assert last["dapo/rounds"] == 2 and last["dapo/informative_groups"] == 0.0


def test_overlong_penalty_is_added_to_the_rule_reward(tmp_path):
    cfg = _cfg(tmp_path, iterations=1)
    cfg.sampling.max_tokens = 2
    cfg.algorithm.overlong_buffer = 1
    cfg.algorithm.overlong_penalty = 0.5
    group = FakeGroup()
    last, _ = _run(cfg, group, _loader(tmp_path, ["all"] * 4, 2), tmp_path)
    batch, _, _ = group.updates[0]
    # Every response has 2 tokens = max_tokens: the full penalty, on top of reward 1.
    assert all(s.penalty == -0.5 and s.total_reward == 0.5 for s in batch)
    assert last["reward/mean"] == 0.5 and last["reward/math"] == 1.0


# -- the whole run (train): resume, history, the initial checkpoint --------------------------


def _run_cfg(tmp_path: Path, model_dir: Path, iterations: int, **trainer) -> GRPOConfig:
    prefix = tmp_path / "data" / "train"
    if not Path(f"{prefix}_prompt.idx").is_file():
        write_prompt_dataset(prefix, [([10 + i, 1, 2], "half") for i in range(16)], {})
    cfg = _cfg(tmp_path, iterations=iterations, save_interval=1, export_hf=False, **trainer)
    cfg.model.hf_dir = str(model_dir)
    cfg.data.train_prefix = str(prefix)
    cfg.data.val_prefix = ""
    cfg.trainer.output_dir = str(tmp_path / "run")
    return cfg


def _train(cfg: GRPOConfig) -> list[FakeGroup]:
    import io

    from mindspeed_rl.driver.grpo import train

    groups: list[FakeGroup] = []

    def make_group(*_):
        groups.append(FakeGroup())
        return groups[-1]

    train(cfg, "fake", io.StringIO(), make_group)
    return groups


def _iterations(path: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines()]


def test_resume_takes_the_newest_complete_checkpoint_and_repeats_nothing(tmp_path, tiny_qwen2_dir):
    out = tmp_path / "run"
    _train(_run_cfg(tmp_path, tiny_qwen2_dir, 2))
    (group,) = _train(_run_cfg(tmp_path, tiny_qwen2_dir, 3))
    assert ("load", 2) in group.calls and [c for c in group.calls if c[0] == "save"] == [
        ("save", 3)
    ]
    # A save that died after writing the tracker but before its folder was complete, and a
    # tracker of garbage: the newest complete checkpoint (3) is still the one resumed.
    (out / "checkpoints" / "iter_0000004").mkdir()
    (out / "checkpoints" / mf.TRACKER).write_text("4x\n")
    (group,) = _train(_run_cfg(tmp_path, tiny_qwen2_dir, 4))
    assert ("load", 3) in group.calls
    assert latest_checkpoint(out / "checkpoints") == 4
    assert sorted(set(r["iteration"] for r in load_metrics(out / "metrics.jsonl"))) == [1, 2, 3, 4]
    samples = _iterations(out / "samples.jsonl")
    assert sorted(set(samples)) == [1, 2, 3, 4] and len(samples) == 4 * 4  # 4 rows each, once


def test_a_fresh_start_does_not_wipe_a_previous_run(tmp_path, tiny_qwen2_dir):
    from mindspeed_rl.errors import UserError

    out = tmp_path / "run"
    _train(_run_cfg(tmp_path, tiny_qwen2_dir, 2))
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(
        UserError,
        match=r"holds a previous run \(2 iterations in metrics.jsonl; "
        r"checkpoints iter_0000001, iter_0000002\)",
    ):
        _train(_run_cfg(tmp_path, tiny_qwen2_dir, 2, resume="never"))
    assert (out / "metrics.jsonl").read_text() == before
    (group,) = _train(_run_cfg(tmp_path, tiny_qwen2_dir, 1, resume="never", overwrite=True))
    assert not any(c[0] == "load" for c in group.calls)
    assert sorted(p.name for p in (out / "checkpoints").glob("iter_*")) == ["iter_0000001"]
    assert _iterations(out / "metrics.jsonl") == [1]


def test_the_initial_checkpoint_follows_the_model(tmp_path, tiny_qwen2_dir):
    import shutil

    from mindspeed_rl.driver.grpo import INIT_SOURCE, prepare_initial_checkpoint

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen2_dir, model)
    cfg = _run_cfg(tmp_path, model, 1)
    init = prepare_initial_checkpoint(cfg, tmp_path / "run")
    stamp = (init / INIT_SOURCE).stat().st_mtime_ns
    assert prepare_initial_checkpoint(cfg, tmp_path / "run") == init
    assert (init / INIT_SOURCE).stat().st_mtime_ns == stamp  # same model: reused
    config = json.loads((model / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config.get("rms_norm_eps") != 1e-5 else 1e-6
    (model / "config.json").write_text(json.dumps(config))
    prepare_initial_checkpoint(cfg, tmp_path / "run")
    source = json.loads((init / INIT_SOURCE).read_text())
    assert (init / INIT_SOURCE).stat().st_mtime_ns != stamp  # another model: converted again
    _, meta = mf.read_meta(init)
    assert meta.spec.norm_eps == config["rms_norm_eps"] and source["tp"] == 1


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tmp_path):
    from mindspeed_rl.errors import UserError

    class Diverges(FakeGroup):
        def update(self, batch, mini_batches, lr):
            figures = super().update(batch, mini_batches, lr)
            return (
                {**figures, "actor/grad_norm": float("nan")} if len(self.updates) == 2 else figures
            )

    cfg = _cfg(tmp_path, iterations=3, save_interval=1)
    group = Diverges()
    with pytest.raises(
        UserError,
        match=r"iteration 2: actor/grad_norm = nan; stopped without "
        r"saving \(the last good checkpoint is iter_0000001\)",
    ):
        _run(cfg, group, _loader(tmp_path, ["half"] * 8, 2), tmp_path)
    assert [c for c in group.calls if c[0] == "save"] == [("save", 1)]


def test_keep_checkpoints_deletes_the_oldest_after_each_save(tmp_path):
    cfg = _cfg(tmp_path, iterations=5, save_interval=1, keep_checkpoints=2)
    group = FakeGroup()
    _run(cfg, group, _loader(tmp_path, ["half"] * 16, 2), tmp_path)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_0000004", "iter_0000005"]
    assert latest_checkpoint(root) == 5


def test_several_held_out_sets_each_with_its_own_samples(tmp_path):
    cfg = _cfg(tmp_path, iterations=2, val_interval=2)
    group = FakeGroup()
    sets = [ValSet("val", [[1, 2]], ["all"], 1),
            ValSet("val/hard", [[3, 4], [5, 6]], ["none", "half"], 4)]  # fmt: skip
    _, rows = _run(cfg, group, _loader(tmp_path, ["half"] * 8, 2), tmp_path, sets)
    first = next(r for r in rows if r["iteration"] == 0)
    assert first["val/accuracy"] == 1.0 and "val/avg_at_k" not in first
    # "none" never right, "half" right on even samples (greedy j=0 right): pass@1 1/2,
    # avg@4 (0 + 2/4) / 2, pass@4 1/2.
    assert first["val/hard/accuracy"] == 0.5
    assert first["val/hard/avg_at_k"] == 0.25 and first["val/hard/pass_at_k"] == 0.5
    generated = [c for c in group.calls if c[0] == "generate"][:3]
    assert generated == [("generate", 1, 1, 0), ("generate", 2, 1, 0), ("generate", 2, 4, 0)]


def test_a_held_out_set_with_a_scorer_of_its_own(tmp_path):
    # A GPQA-style set scored by the multiple-choice scorer while training uses math: its
    # samples go to the reward role with {choice, format}, and its accuracy is read from
    # the choice part (the fake names the part after the scorer asked for: reading the
    # math part would fail with a KeyError).
    cfg = _cfg(tmp_path, iterations=1, val_interval=1)
    group = FakeGroup()
    sets = [ValSet("val/gpqa", [[1, 2], [3, 4]], ["all", "none"], 1, scorer="choice")]
    _, rows = _run(cfg, group, _loader(tmp_path, ["half"] * 8, 2), tmp_path, sets)
    first = next(r for r in rows if r["iteration"] == 0)
    assert first["val/gpqa/accuracy"] == 0.5 and first["val/gpqa/format"] == 1.0
    assert ("score", 2, {"choice": 1.0, "format": 0.0}) in group.calls
    # Training samples keep the configured scorers.
    assert ("score", 2 * G) in group.calls


def test_a_held_out_scorer_that_does_not_exist_is_refused_by_name():
    from mindspeed_rl.config.grpo import ValSetConfig

    with pytest.raises(ValueError, match=r"scorer: unknown scorer 'choise'; use one of choice"):
        ValSetConfig(prefix="data/gpqa/test", scorer="choise")
