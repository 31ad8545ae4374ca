"""Who holds device memory when, in a hybrid actor that trains and samples on one device.

A small state machine the trainer drives every iteration:

    TRAIN --to_rollout(sync)--> ROLLOUT --to_train()--> TRAIN

to_rollout: offload optimizer state and gradients to host; wake the engine's weights; run
the weight sync; offload the training parameters too if asked; wake the engine's KV cache.
to_train: release the engine's KV cache and weights; bring parameters, optimizer state and
gradients back. On CPU every move is a no-op (host memory is the device), but the order of
the steps is the same and is recorded, so it is tested without an accelerator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum

import torch

from mindspeed_rl.accelerator import Accelerator
from mindspeed_rl.rollout.base import RolloutEngine


class Phase(Enum):
    TRAIN = "train"
    ROLLOUT = "rollout"


def _move_tensors(tensors: Iterable[torch.Tensor], device: torch.device) -> None:
    for t in tensors:
        if t.device != device:
            t.data = t.data.to(device, non_blocking=True)


class HybridMemory:
    """Drives the train <-> rollout memory hand-over; ``events`` records what ran, in order."""

    def __init__(
        self,
        accelerator: Accelerator,
        engine: RolloutEngine | None,
        params: list[torch.nn.Parameter],
        optimizer: torch.optim.Optimizer | None,
        offload_params: bool = False,
    ):
        self.acc = accelerator
        self.engine = engine
        self.params = params
        self.optimizer = optimizer
        self.offload_params = offload_params
        self.phase = Phase.TRAIN
        self.events: list[str] = []
        self._moves = accelerator.kind != "cpu"

    def _optimizer_tensors(self) -> list[torch.Tensor]:
        if self.optimizer is None:
            return []
        return [
            v for state in self.optimizer.state.values() for v in state.values()
            if isinstance(v, torch.Tensor)
        ]  # fmt: skip

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.params if p.grad is not None]

    def _offload(self, what: str, tensors: list[torch.Tensor]) -> None:
        if self._moves:
            _move_tensors(tensors, torch.device("cpu"))
        self.events.append(f"offload_{what}")

    def _onload(self, what: str, tensors: list[torch.Tensor]) -> None:
        if self._moves:
            _move_tensors(tensors, self.acc.device)
        self.events.append(f"onload_{what}")

    def to_rollout(self, sync_weights: Callable[[], None]) -> None:
        """Hand the device to the inference engine, with the current weights synced in."""
        if self.phase is not Phase.TRAIN:
            raise RuntimeError(f"to_rollout called in phase {self.phase.value}")
        self._offload("optimizer", self._optimizer_tensors())
        self._offload("grads", self._grads())
        if self._moves:
            self.acc.empty_cache()
        if self.engine is not None:
            self.engine.resume_memory()
        self.events.append("engine_resume")
        sync_weights()
        self.events.append("sync_weights")
        if self.offload_params:
            self._offload("params", list(self.params))
        self.phase = Phase.ROLLOUT

    def to_train(self) -> None:
        """Hand the device back to training."""
        if self.phase is not Phase.ROLLOUT:
            raise RuntimeError(f"to_train called in phase {self.phase.value}")
        if self.engine is not None:
            self.engine.release_memory()
        self.events.append("engine_release")
        if self._moves:
            self.acc.empty_cache()
        if self.offload_params:
            self._onload("params", list(self.params))
        self._onload("optimizer", self._optimizer_tensors())
        self._onload("grads", self._grads())
        self.phase = Phase.TRAIN
