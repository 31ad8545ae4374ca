"""Who holds device memory when, in a hybrid actor that trains and samples on one device.

A small state machine the trainer drives every iteration:

    TRAIN --to_rollout(sync)--> ROLLOUT --to_train()--> TRAIN

to_rollout: free the DDP gradient buffers and move the optimizer's state (fp32 main params
and Adam moments, this rank's shard of them with the distributed optimizer) to host; wake
the engine's weights; run the weight sync; move the training params to host too if asked;
wake the engine's KV cache (vLLM sleep mode: weights first, so the sync never overlaps the
cache). An optimizer that steps the model's own params (fp32 params, replicated optimizer)
is moved after the sync instead: its offload moves those params, and the resharder's
collectives need them on the device.
to_train: release the engine; bring params and optimizer state back; re-allocate the
gradient buffers (zeroed).

The engine itself is built through :meth:`HybridMemory.build_engine`, with the training state
parked the same way: on accelerators vLLM sizes itself as gpu_memory_utilization x the
device's total memory and refuses to start unless that much is free
(vllm/v1/worker/utils.py ``request_memory``), so it must not see the gradient buffers and
optimizer state as used. It then sleeps until the first rollout.

The moves are megatron-core's own (``MegatronOptimizer.offload_to_cpu`` /
``restore_from_cpu``, the DDP buffers' ``offload_to_cpu`` / ``reload_from_cpu``). On CPU the
optimizer state already lives in host memory, so only the gradient buffers are freed, which
is a real saving there too; the bytes each step frees are recorded, so the hand-over is
tested without an accelerator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import torch
from megatron.core.optimizer import MegatronOptimizer

from mindspeed_rl.accelerator import Accelerator
from mindspeed_rl.rollout.base import RolloutEngine
from mindspeed_rl.training import optimizer as opt


class Phase(Enum):
    TRAIN = "train"
    ROLLOUT = "rollout"


def _buffers(chunks: Sequence[torch.nn.Module]) -> list:
    return [b for c in chunks for b in (*c.buffers, *c.expert_parallel_buffers)]


def grad_buffer_bytes(chunks: Sequence[torch.nn.Module]) -> int:
    """Bytes held by the DDP gradient buffers of ``chunks`` now (0 while offloaded)."""
    return sum(
        b.grad_data.untyped_storage().nbytes() for b in _buffers(chunks) if b.grad_data is not None
    )


class HybridMemory:
    """Drives the train <-> rollout memory hand-over.

    ``events`` records what ran, in order; ``moved`` the bytes each step took off the device
    (the optimizer's only on accelerators, where it lives there).
    """

    def __init__(
        self,
        accelerator: Accelerator,
        engine: RolloutEngine | None,
        chunks: Sequence[torch.nn.Module],
        optimizer: MegatronOptimizer | None,
        offload_params: bool = False,
        frozen: Sequence[torch.nn.Module] = (),
        pin_host_memory: bool = False,
    ):
        self.acc = accelerator
        self.engine = engine
        self.chunks = list(chunks)
        self.frozen = list(frozen)
        """Models that only run forward (the KL reference): moved with the params."""
        self.optimizer = optimizer
        self.offload_params = offload_params
        self.phase = Phase.TRAIN
        self.events: list[str] = []
        self.moved: dict[str, int] = {}
        self._on_device = not accelerator.on_host
        self._offload_optimizer_after_sync = optimizer is not None and opt.steps_model_params(
            optimizer
        )
        # Reused page-locked host buffers instead of megatron-core's pageable offload.
        self.mirror = (
            opt.HostMirror(optimizer, pin=True)
            if pin_host_memory and optimizer is not None and self._on_device
            else None
        )

    def optimizer_bytes(self) -> int:
        """Bytes megatron-core's optimizer offload moves (what it holds for this rank)."""
        return 0 if self.optimizer is None else opt.state_bytes(self.optimizer)

    def build_engine(self, factory: Callable[[], RolloutEngine]) -> RolloutEngine:
        """Build the engine with ``factory`` while the training state is parked (gradient
        buffers freed, optimizer state and, with offload_params, the params on the host), put
        it to sleep, and bring the training state back."""
        if self.phase is not Phase.TRAIN or self.engine is not None:
            raise RuntimeError("build_engine is called once, in phase train, before any rollout")
        self._offload_grads()
        self._offload_optimizer()
        self._offload_params()
        self.engine = factory()
        self.events.append("engine_build")
        self.engine.release_memory()
        self.events.append("engine_release")
        self._onload()
        return self.engine

    def to_rollout(self, sync_weights: Callable[[], None]) -> None:
        """Hand the device to the inference engine, with the current weights synced in."""
        if self.phase is not Phase.TRAIN:
            raise RuntimeError(f"to_rollout called in phase {self.phase.value}")
        self._offload_grads()
        if not self._offload_optimizer_after_sync:
            self._offload_optimizer()
        if self.engine is not None:
            self.engine.resume_weights()
        self.events.append("engine_resume_weights")
        sync_weights()
        self.events.append("sync_weights")
        if self._offload_optimizer_after_sync:
            self._offload_optimizer()
        self._offload_params()
        if self.engine is not None:
            self.engine.resume_kv_cache()
        self.events.append("engine_resume_kv_cache")
        self.phase = Phase.ROLLOUT

    def _offload_grads(self) -> None:
        before = grad_buffer_bytes(self.chunks)
        for buffer in _buffers(self.chunks):
            buffer.offload_to_cpu(move_params=False, move_grads=True)
        self.moved["grads"] = before - grad_buffer_bytes(self.chunks)
        self.events.append("offload_grads")

    def _offload_params(self) -> None:
        if not self.offload_params:
            return
        if self._on_device:
            for buffer in _buffers(self.chunks):  # the distributed optimizer's param buffers
                buffer.offload_to_cpu(move_params=True, move_grads=False)
            for p in self._loose_params():
                p.data = p.data.cpu().pin_memory()
            self.acc.empty_cache()
        self.events.append("offload_params")

    def _loose_params(self) -> list[torch.nn.Parameter]:
        """Params that no DDP param buffer holds (those of the replicated optimizer, whose
        DDP allocates none, and the frozen models'): moved one by one."""
        held = [p for b in _buffers(self.chunks) if b.param_data is None for p in b.params]
        return held + [p for m in self.frozen for p in m.parameters()]

    def _offload_optimizer(self) -> None:
        if self.mirror is not None:
            self.mirror.offload(self.acc.synchronize)
        elif self.optimizer is not None and self._on_device:
            self.optimizer.offload_to_cpu()
        self.moved["optimizer"] = self.optimizer_bytes() if self._on_device else 0
        self.events.append("offload_optimizer")
        if self._on_device:
            self.acc.empty_cache()

    def to_train(self) -> None:
        """Hand the device back to training."""
        if self.phase is not Phase.ROLLOUT:
            raise RuntimeError(f"to_train called in phase {self.phase.value}")
        if self.engine is not None:
            self.engine.release_memory()
        self.events.append("engine_release")
        self._onload()
        self.phase = Phase.TRAIN

    def _onload(self) -> None:
        if self._on_device:
            self.acc.empty_cache()
        if self.offload_params and self._on_device:
            for buffer in _buffers(self.chunks):
                buffer.reload_from_cpu(move_params=True, move_grads=False)
            for p in self._loose_params():
                p.data = p.data.to(self.acc.device, non_blocking=True)
            self.acc.synchronize()
        if self.offload_params:
            self.events.append("onload_params")
        if self.mirror is not None:
            self.mirror.restore()
            self.acc.synchronize()
        elif self.optimizer is not None and self._on_device:
            self.optimizer.restore_from_cpu()
        self.events.append("onload_optimizer")
        for buffer in _buffers(self.chunks):
            buffer.reload_from_cpu(move_params=False, move_grads=True)
        self.events.append("onload_grads")
