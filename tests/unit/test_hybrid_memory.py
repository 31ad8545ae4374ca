"""The train <-> rollout memory hand-over runs its steps in order, and only in order."""

from __future__ import annotations

import pytest
import torch

from mindspeed_rl.accelerator import get_accelerator
from mindspeed_rl.workers.hybrid_memory import HybridMemory, Phase


class _RecordingEngine:
    def __init__(self, events):
        self.events = events

    def resume_memory(self):
        self.events.append("engine.resume_memory")

    def release_memory(self):
        self.events.append("engine.release_memory")


def _setup(offload_params):
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    calls: list[str] = []
    mem = HybridMemory(
        get_accelerator("cpu"), _RecordingEngine(calls), list(model.parameters()), opt,
        offload_params=offload_params,
    )  # fmt: skip
    return mem, calls


@pytest.mark.parametrize("offload_params", [False, True])
def test_iteration_order(offload_params):
    mem, calls = _setup(offload_params)
    synced = []
    mem.to_rollout(lambda: synced.append(list(mem.events)))
    assert mem.phase is Phase.ROLLOUT
    # The sync sees the engine awake and the optimizer state already out of the way.
    assert synced == [["offload_optimizer", "offload_grads", "engine_resume"]]
    mem.to_train()
    expected = ["offload_optimizer", "offload_grads", "engine_resume", "sync_weights"]
    if offload_params:
        expected.append("offload_params")
    expected.append("engine_release")
    if offload_params:
        expected.append("onload_params")
    expected += ["onload_optimizer", "onload_grads"]
    assert mem.events == expected
    assert calls == ["engine.resume_memory", "engine.release_memory"]
    assert mem.phase is Phase.TRAIN


def test_out_of_order_transitions_raise():
    mem, _ = _setup(False)
    with pytest.raises(RuntimeError, match="to_train called in phase train"):
        mem.to_train()
    mem.to_rollout(lambda: None)
    with pytest.raises(RuntimeError, match="to_rollout called in phase rollout"):
        mem.to_rollout(lambda: None)
