"""Weights from the trainer to generation-only ranks, over a process group of their own.

With ``resources.rollout_workers`` some ranks only generate: they hold a vLLM engine and no
training state, so the in-memory resharding of the hybrid engine cannot reach them. After each
update the trainer streams the model as full HF-named tensors (the resharder's buckets; every
training rank takes part in the stream's TP / PP collectives) and its rank 0 broadcasts each
bucket, as one flat buffer, to the generation ranks. A generation rank knows the buckets'
names and shapes from :meth:`MegatronToHF.manifest <mindspeed_rl.resharding.megatron_to_hf.
MegatronToHF.manifest>` (sent once, through Ray) and hands the engine a lazy iterator over
what arrives: at most one bucket is alive on either side.

The group is not part of torch.distributed's default world (that world is the trainer's, or
the generation ranks' own): it is built directly on the trainer's rendezvous store, rank 0
being the trainer's rank 0, ranks 1.. the generation ranks, through vLLM's own stateless
process groups (what vLLM builds its data-parallel and weight-transfer groups with): gloo on
CPU (tested here), and on accelerators the platform's ``stateless_init_device_torch_dist_pg``:
NCCL in vLLM's CUDA platform, HCCL in vllm-ascend's NPU platform (read, not run here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from mindspeed_rl.errors import UserError

Manifest = list[list[tuple[str, tuple[int, ...]]]]
"""Buckets of ``(hf_name, shape)``, in stream order."""


class WeightTransfer:
    """One end of the trainer -> generation ranks broadcast group."""

    def __init__(self, store: dist.Store, rank: int, size: int, backend: str,
                 timeout_s: float = 600.0):  # fmt: skip
        self.rank = rank
        prefixed = dist.PrefixStore("mindspeed_rl/weights", store)
        timeout = timedelta(seconds=timeout_s)
        if backend == "gloo":
            from vllm.distributed.utils import init_gloo_process_group

            self.group = init_gloo_process_group(prefixed, rank, size, timeout)
            return
        from vllm.platforms import current_platform

        try:
            self.group = current_platform.stateless_init_device_torch_dist_pg(
                backend, prefixed, rank, size, timeout
            )
        except NotImplementedError:
            raise UserError(
                f"resources.rollout_workers: vLLM's {type(current_platform).__name__} cannot "
                f"build a {backend} group to send weights over; use the hybrid engine "
                "(resources.rollout_workers=0) on this device"
            ) from None

    def _broadcast(self, flat: torch.Tensor) -> None:
        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self.group.broadcast([flat], opts).wait()

    def send(self, buckets: Iterable[list[tuple[str, torch.Tensor]]]) -> int:
        """Broadcast every bucket (group rank 0); returns the bytes sent."""
        assert self.rank == 0, "only the trainer's rank 0 sends"
        sent = 0
        for bucket in buckets:
            flat = torch.cat([t.detach().reshape(-1) for _, t in bucket])
            self._broadcast(flat)
            sent += flat.numel() * flat.element_size()
        return sent

    def receive(self, manifest: Manifest, dtype: torch.dtype,
                device: torch.device | str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:  # fmt: skip
        """The weights rank 0 sends, as ``(hf_name, tensor)``, bucket by bucket: a lazy
        iterator (each bucket is received when the consumer gets to it)."""
        for bucket in manifest:
            flat = torch.empty(sum(math.prod(s) for _, s in bucket), dtype=dtype, device=device)
            self._broadcast(flat)
            offset = 0
            for name, shape in bucket:
                n = math.prod(shape)
                yield name, flat[offset : offset + n].view(shape)
                offset += n
            del flat

    def close(self) -> None:
        shutdown = getattr(self.group, "shutdown", None)
        if shutdown is not None:
            shutdown()
