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


# -- one step off policy ----------------------------------------------------------------------


class DisaggregatedFakeGroup(FakeGroup):
    """Generation on ranks of its own (as WorkerGroup with resources.rollout_workers): it may
    run while the trainer updates; weights are sent only when an update changed them, and
    never while the generation ranks are busy. Generation is slow enough to overlap."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.version = 0  # of the trainer's weights
        self.engine_version = -1  # what the generation ranks hold
        self.busy = 0
        self.lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float]]] = {"generate": [], "update": []}

    def to_rollout(self) -> None:
        with self.lock:
            assert self.busy == 0, "weights sent while the generation ranks generate"
        if self.engine_version != self.version:
            self.calls.append(("send", self.version))
            self.engine_version = self.version

    def to_train(self) -> None:
        pass

    def generate(self, prompts, labels, sampling, version):
        import time

        if sampling.n == G:  # a training batch (validation records no version)
            assert version == self.engine_version, (version, self.engine_version)
        with self.lock:
            self.busy += 1
        start = time.perf_counter()
        time.sleep(0.2)
        self.phase = "rollout"
        out = super().generate(prompts, labels, sampling, version)
        self.phase = "train"
        self.spans["generate"].append((start, time.perf_counter()))
        with self.lock:
            self.busy -= 1
        return out

    crash_at_update: int = 0
    """Raise at this update (a run killed in the middle)."""

    def update(self, batch, mini_batches, lr):
        import time

        if len(self.updates) + 1 == self.crash_at_update:
            raise KeyboardInterrupt("killed")
        start = time.perf_counter()
        time.sleep(0.2)
        out = super().update(batch, mini_batches, lr)
        self.spans["update"].append((start, time.perf_counter()))
        self.version += 1
        return out

    def load(self, root: Path, iteration: int) -> None:
        super().load(root, iteration)
        self.version = iteration


def _off_policy(cfg: GRPOConfig) -> GRPOConfig:
    cfg.algorithm.max_staleness = 1
    cfg.resources.rollout_workers = 1
    return cfg


def test_one_step_off_policy_trains_each_batch_one_version_behind_and_overlaps(tmp_path):
    cfg = _off_policy(_cfg(tmp_path, iterations=4, save_interval=0, val_interval=3))
    group = DisaggregatedFakeGroup()
    val = [ValSet("val", [[1, 2]], ["all"], 1)]
    _, rows = _run(cfg, group, _loader(tmp_path, ["half"] * 16, 2), tmp_path, val)
    trained = [{s.version for s in batch} for batch, _, _ in group.updates]
    # Iteration 1 trains on the initial policy's batch; every later one on the batch the
    # weights before the previous update sampled while that update ran.
    assert trained == [{0}, {0}, {1}, {2}]
    lags = [r["async/staleness_max"] for r in rows if "async/staleness_max" in r]
    assert lags == [0.0, 1.0, 1.0, 1.0]
    # The weights go out once per update (plus the first), never while generating (checked
    # in to_rollout), and validation after iteration 3 saw the weights of iteration 3.
    sends = [c for c in group.calls if c[0] == "send"]
    assert sends == [("send", 0), ("send", 1), ("send", 2), ("send", 3)]
    assert [r["iteration"] for r in rows if "val/accuracy" in r] == [0, 3]
    # Generation really ran during updates.
    overlaps = [
        (g, u) for g in group.spans["generate"] for u in group.spans["update"]
        if g[0] < u[1] and u[0] < g[1]
    ]  # fmt: skip
    assert len(overlaps) >= 2
    assert all("timing/rollout_wait" in r for r in rows if "actor/loss" in r)


def test_off_policy_batches_beyond_the_bound_stop_the_run():
    from mindspeed_rl.driver.grpo import staleness_metrics

    def batch(*versions):
        return Batch(tuple(Sample(prompt_ids=[1], label="", group=0, version=v,
                                  response_ids=[2], rollout_logprobs=None, finish=Finish.STOP)
                           for v in versions))  # fmt: skip

    assert staleness_metrics(batch(2, 3), 4, 1) == {
        "async/staleness_mean": 0.5, "async/staleness_max": 1.0,
    }  # fmt: skip
    with pytest.raises(
        RuntimeError, match=r"versions \[1, 3\] used with algorithm.max_staleness=1"
    ):
        staleness_metrics(batch(1, 3), 4, 1)
    with pytest.raises(RuntimeError, match="max_staleness=0"):
        staleness_metrics(batch(3, 2), 4, 0)
    with pytest.raises(RuntimeError):  # a sample of a policy newer than the trained one
        staleness_metrics(batch(4), 4, 1)


def _train_off_policy(cfg: GRPOConfig, crash_at_update: int = 0) -> list[DisaggregatedFakeGroup]:
    import io

    from mindspeed_rl.driver.grpo import train

    groups: list[DisaggregatedFakeGroup] = []

    def make_group(*_):
        groups.append(DisaggregatedFakeGroup())
        groups[-1].crash_at_update = crash_at_update
        return groups[-1]

    train(cfg, "fake", io.StringIO(), make_group)
    return groups


def test_off_policy_resume_trains_on_the_batch_collected_ahead(tmp_path, tiny_qwen2_dir):
    """Killed after the checkpoint of iteration 2 (whose batch for 3 was already collected),
    the resumed run trains iterations 3 and 4 on exactly the batches the unbroken run did."""
    whole = tmp_path / "whole"
    whole.mkdir()
    (unbroken,) = _train_off_policy(_off_policy(_run_cfg(whole, tiny_qwen2_dir, 4)))
    parts = tmp_path / "parts"
    parts.mkdir()
    cfg = _off_policy(_run_cfg(parts, tiny_qwen2_dir, 4))
    with pytest.raises(KeyboardInterrupt):
        _train_off_policy(cfg, crash_at_update=3)
    ahead = json.loads((parts / "run" / "checkpoints" / "iter_0000002" / "rollout_ahead.json")
                       .read_text())  # fmt: skip
    assert ahead["iteration"] == 3 and {s["version"] for s in ahead["samples"]} == {1}
    (resumed,) = _train_off_policy(_off_policy(_run_cfg(parts, tiny_qwen2_dir, 4)))
    assert ("load", 2) in resumed.calls
    assert [u[0] for u in resumed.updates] == [u[0] for u in unbroken.updates[2:]]
    # The resumed run did not generate the batch of iteration 3 again: only 4's.
    assert [c[3] for c in resumed.calls if c[0] == "generate"] == [2]
    # The last checkpoint has nothing ahead (there is no iteration 5).
    assert not (parts / "run" / "checkpoints" / "iter_0000004" / "rollout_ahead.json").exists()


def test_an_on_policy_resume_skips_a_batch_collected_ahead(tmp_path, tiny_qwen2_dir):
    with pytest.raises(KeyboardInterrupt):
        _train_off_policy(_off_policy(_run_cfg(tmp_path, tiny_qwen2_dir, 3)), crash_at_update=3)
    assert (tmp_path / "run" / "checkpoints" / "iter_0000002" / "rollout_ahead.json").is_file()
    (group,) = _train(_run_cfg(tmp_path, tiny_qwen2_dir, 3))
    assert [{s.version for s in u[0]} for u in group.updates] == [{2}]
