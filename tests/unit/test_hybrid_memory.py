"""The train <-> rollout memory hand-over runs its steps in order, and only in order (the
bytes it frees, on real megatron-core DDP buffers and optimizer state, are tested in
tests/integration/test_hybrid_memory_bytes.py)."""

from __future__ import annotations

import pytest

from mindspeed_rl.accelerator import get_accelerator
from mindspeed_rl.workers.hybrid_memory import HybridMemory, Phase


class _RecordingEngine:
    def __init__(self, events):
        self.events = events

    def resume_weights(self):
        self.events.append("engine.resume_weights")

    def resume_kv_cache(self):
        self.events.append("engine.resume_kv_cache")

    def release_memory(self):
        self.events.append("engine.release_memory")


def _setup(offload_params):
    calls: list[str] = []
    mem = HybridMemory(
        get_accelerator("cpu"), _RecordingEngine(calls), [], None, offload_params=offload_params
    )
    return mem, calls


@pytest.mark.parametrize("offload_params", [False, True])
def test_iteration_order(offload_params):
    mem, calls = _setup(offload_params)
    synced = []
    mem.to_rollout(lambda: synced.append(list(mem.events)))
    assert mem.phase is Phase.ROLLOUT
    # The sync sees the engine awake and the optimizer state already out of the way.
    assert synced == [["offload_grads", "offload_optimizer", "engine_resume_weights"]]
    mem.to_train()
    expected = ["offload_grads", "offload_optimizer", "engine_resume_weights", "sync_weights"]
    if offload_params:
        expected.append("offload_params")
    expected += ["engine_resume_kv_cache", "engine_release"]
    if offload_params:
        expected.append("onload_params")
    expected += ["onload_optimizer", "onload_grads"]
    assert mem.events == expected
    assert calls == [
        "engine.resume_weights", "engine.resume_kv_cache", "engine.release_memory"
    ]  # fmt: skip
    assert mem.phase is Phase.TRAIN


def test_out_of_order_transitions_raise():
    mem, _ = _setup(False)
    with pytest.raises(RuntimeError, match="to_train called in phase train"):
        mem.to_train()
    mem.to_rollout(lambda: None)
    with pytest.raises(RuntimeError, match="to_rollout called in phase rollout"):
        mem.to_rollout(lambda: None)


def test_an_optimizer_that_steps_the_model_params_is_offloaded_after_the_sync():
    # fp32 params with the replicated optimizer: megatron-core's FP32Optimizer steps the
    # model's own params, and its offload moves them to host. The sync must see them on the
    # device, so that offload comes after it.
    import torch
    from megatron.core.optimizer import OptimizerConfig
    from megatron.core.optimizer.optimizer import FP32Optimizer

    from mindspeed_rl.accelerator import megatron_device_scope

    param = torch.nn.Parameter(torch.ones(4))
    with megatron_device_scope():
        fp32 = FP32Optimizer(torch.optim.Adam([param]), OptimizerConfig(lr=1e-3), lambda *a: None)
    calls: list[str] = []
    mem = HybridMemory(get_accelerator("cpu"), _RecordingEngine(calls), [], fp32)
    synced = []
    mem.to_rollout(lambda: synced.append(list(mem.events)))
    assert synced == [["offload_grads", "engine_resume_weights"]]
    assert mem.events[:5] == [
        "offload_grads", "engine_resume_weights", "sync_weights", "offload_optimizer",
        "engine_resume_kv_cache",
    ]  # fmt: skip


@pytest.mark.parametrize("offload_params", [False, True])
def test_the_engine_is_built_with_the_training_state_parked_then_sleeps(offload_params):
    # vLLM sizes itself from the free memory it sees while it builds: the training state is
    # out of the way then, the engine sleeps, and training gets its state back.
    calls: list[str] = []
    mem = HybridMemory(get_accelerator("cpu"), None, [], None, offload_params=offload_params)
    seen = []

    def factory():
        seen.append(list(mem.events))
        return _RecordingEngine(calls)

    engine = mem.build_engine(factory)
    parked = ["offload_grads", "offload_optimizer"] + (["offload_params"] if offload_params else [])
    assert seen == [parked]
    onload = (["onload_params"] if offload_params else []) + ["onload_optimizer", "onload_grads"]
    assert mem.events == parked + ["engine_build", "engine_release"] + onload
    assert calls == ["engine.release_memory"] and mem.engine is engine
    assert mem.phase is Phase.TRAIN
    with pytest.raises(RuntimeError, match="build_engine is called once"):
        mem.build_engine(factory)


class _DeviceLike:
    """An accelerator as HybridMemory sees one (state lives off the host), on CPU tensors."""

    on_host = False

    def __init__(self):
        import torch

        self.device = torch.device("cpu")
        self.synced = 0

    def empty_cache(self):
        pass

    def synchronize(self):
        self.synced += 1


@pytest.mark.parametrize("pin", [False, True])
def test_pin_host_memory_moves_the_optimizer_through_the_host_mirror(pin):
    import torch
    from megatron.core.optimizer import OptimizerConfig
    from megatron.core.optimizer.optimizer import FP32Optimizer

    from mindspeed_rl.accelerator import megatron_device_scope

    param = torch.nn.Parameter(torch.ones(4))
    with megatron_device_scope():
        fp32 = FP32Optimizer(torch.optim.Adam([param]), OptimizerConfig(lr=1e-3), lambda *a: None)
    mem = HybridMemory(_DeviceLike(), _RecordingEngine([]), [], fp32, pin_host_memory=pin)
    assert (mem.mirror is not None) == pin
    if not pin:
        return
    mem.mirror.pin = False  # page-locking needs a real accelerator
    mem.to_rollout(lambda: None)
    (buffer,) = mem.mirror.buffers.values()
    assert param.data.data_ptr() == buffer.data_ptr()  # the state sits in the mirror's buffer
    mem.to_train()
    assert param.data.data_ptr() != buffer.data_ptr() and torch.equal(param.data, buffer)
    assert mem.acc.synced >= 2  # after the copies out and after the copies back
