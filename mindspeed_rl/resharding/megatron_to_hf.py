"""Stream a Megatron model's weights as full HF-named tensors to every rank's engine.

Each rank holds one (TP, PP) shard of the model, as one chunk or, with virtual pipeline
stages, several. For every unit of the model (the embedding,
each decoder layer, the final norm, the output layer) the stage that owns it gathers the TP
shards (all-gather in the TP group), undoes the fused layouts with the family's map, and the
result is broadcast across the PP group, so every rank ends up streaming the whole model.
Tensors travel in buckets of at most ``bucket_mb``: a bucket is one flat buffer per PP
broadcast, and the only HF tensors alive at a time are one bucket plus the layer being
unfused. Every rank must iterate the same stream (the collectives run in lockstep), whether
or not it feeds an engine.

All ranks derive the same bucket plan from the model spec, so no metadata is exchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from mindspeed_rl.checkpoint.megatron_format import CheckpointMeta
from mindspeed_rl.models import layout as L
from mindspeed_rl.models.registry import family_by_name
from mindspeed_rl.training.model import layer_owner


@dataclass(frozen=True)
class _Unit:
    """A piece of the model produced at once by its owning pipeline stage."""

    kind: str  # "embedding", "layer", "final_norm", "lm_head"
    stage: int
    layer: int = -1
    local: int = -1
    chunk: int = 0


@dataclass
class _Bucket:
    stage: int
    entries: list[tuple[str, tuple[int, ...], int]]  # (hf name, shape, unit index)

    def numel(self) -> int:
        total = 0
        for _, shape, _ in self.entries:
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


class MegatronToHF:
    """In-memory resharding of this rank's Megatron stage into the HF layout."""

    def __init__(
        self,
        chunks: list[torch.nn.Module],
        meta: CheckpointMeta,
        bucket_mb: int,
        dtype: torch.dtype,
    ):
        if bucket_mb <= 0:
            raise ValueError(f"bucket_mb must be > 0, got {bucket_mb}")
        self.chunks = chunks
        self.meta = meta
        self.spec = meta.spec
        self.family = family_by_name(meta.spec.family)
        self.dtype = dtype
        self.bucket_bytes = bucket_mb * 1024 * 1024
        self.tp = parallel_state.get_tensor_model_parallel_world_size()
        self.pp = parallel_state.get_pipeline_model_parallel_world_size()
        self.pp_rank = parallel_state.get_pipeline_model_parallel_rank()
        self._chunk_params = [dict(c.named_parameters()) for c in chunks]
        self._params = self._chunk_params[0]
        self._units = self._plan_units()
        self._shapes = L.expected_hf_shapes(self.family, self.spec)
        self.buckets = self._plan_buckets()

    def _plan_units(self) -> list[_Unit]:
        last = len(self.chunks) - 1
        units = [_Unit("embedding", 0)]
        for layer in range(self.spec.num_layers):
            stage, chunk, local = layer_owner(
                layer, self.spec.num_layers, self.pp, len(self.chunks)
            )
            units.append(_Unit("layer", stage, layer, local, chunk))
        units.append(_Unit("final_norm", self.pp - 1, chunk=last))
        if not self.spec.tie_word_embeddings:
            units.append(_Unit("lm_head", self.pp - 1, chunk=last))
        return units

    def _unit_names(self, unit: _Unit) -> list[str]:
        g = self.family.global_names
        if unit.kind == "embedding":
            return [g.embedding]
        if unit.kind == "final_norm":
            return [g.final_norm]
        if unit.kind == "lm_head":
            return [g.lm_head]
        suffix = f".{unit.layer}."
        return [n for n in self._shapes if f"layers{suffix}" in n]

    def _plan_buckets(self) -> list[_Bucket]:
        element = torch.empty((), dtype=self.dtype).element_size()
        buckets: list[_Bucket] = []
        for idx, unit in enumerate(self._units):
            for name in self._unit_names(unit):
                shape = self._shapes[name]
                cur = buckets[-1] if buckets else None
                n = 1
                for d in shape:
                    n *= d
                if (
                    cur is None
                    or cur.stage != unit.stage
                    or (cur.entries and (cur.numel() + n) * element > self.bucket_bytes)
                ):
                    cur = _Bucket(unit.stage, [])
                    buckets.append(cur)
                cur.entries.append((name, shape, idx))
        return buckets

    # -- producing one unit on its owning stage ------------------------------------------

    def _gather_tp(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if self.tp == 1:
            return [tensor.detach()]
        parts = [torch.empty_like(tensor) for _ in range(self.tp)]
        dist.all_gather(
            parts,
            tensor.detach().contiguous(),
            group=parallel_state.get_tensor_model_parallel_group(),
        )
        return parts

    def _gather_vocab(self, tensor: torch.Tensor) -> torch.Tensor:
        """The full vocabulary matrix without padding rows, gathered straight into place.

        The embedding is often the largest single tensor (21% of SmolLM2), so it is gathered
        into one buffer and trimmed by a view, not gathered in parts and concatenated.
        """
        if self.tp == 1:
            return tensor.detach()[: self.spec.vocab_size]
        full = torch.empty(
            (tensor.shape[0] * self.tp, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device
        )
        dist.all_gather_into_tensor(
            full,
            tensor.detach().contiguous(),
            group=parallel_state.get_tensor_model_parallel_group(),
        )
        return full[: self.spec.vocab_size]

    @torch.no_grad()
    def _produce(self, unit: _Unit) -> dict[str, torch.Tensor]:
        g = self.family.global_names
        params = self._chunk_params[unit.chunk]
        if unit.kind == "embedding":
            return {g.embedding: self._gather_vocab(params[L.EMBEDDING])}
        if unit.kind == "lm_head":
            return {g.lm_head: self._gather_vocab(params[L.OUTPUT_LAYER])}
        if unit.kind == "final_norm":
            return {g.final_norm: params[L.FINAL_NORM].detach()}
        prefix = L.layer_prefix(unit.local)
        params = self._with_all_experts(params, prefix)
        shards: list[dict[str, torch.Tensor]] = [{} for _ in range(self.tp)]
        for suffix, tp_dim in L.layer_tp_dims(self.spec).items():
            name = prefix + suffix
            if name not in params:
                continue  # e.g. no QKV bias
            local = params[name]
            parts = self._gather_tp(local) if tp_dim is not None else [local.detach()] * self.tp
            for r in range(self.tp):
                shards[r][suffix] = parts[r]
        return L.mcore_layer_to_hf(self.family, self.spec, unit.layer, shards)

    def _with_all_experts(
        self, params: dict[str, torch.Tensor], prefix: str
    ) -> dict[str, torch.Tensor]:
        """``params`` plus this layer's experts held by the other expert-parallel ranks,
        under their global indices (all-gather over the EP group; every rank of the stage
        calls it for the same layer)."""
        ep = parallel_state.get_expert_model_parallel_world_size()
        if not self.spec.is_moe or ep == 1:
            return params
        group = parallel_state.get_expert_model_parallel_group()
        local = self.spec.num_experts // ep
        out = dict(params)
        for name in sorted(n for n in params if n.startswith(prefix) and L.is_expert_key(n)):
            parts = [torch.empty_like(params[name]) for _ in range(ep)]
            dist.all_gather(parts, params[name].detach().contiguous(), group=group)
            for r, part in enumerate(parts):
                out[L.shift_expert(name, r * local)] = part
        return out

    # -- the stream ------------------------------------------------------------------------

    def iter_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(hf_name, tensor)`` for the whole model, bucket by bucket (collective)."""
        for bucket in self.iter_buckets():
            yield from bucket

    def manifest(self) -> list[list[tuple[str, tuple[int, ...]]]]:
        """The stream's buckets as ``(hf_name, shape)`` lists, in order: what a receiver
        without the model (a generation-only rank) needs to size each bucket it is sent."""
        return [[(name, shape) for name, shape, _ in b.entries] for b in self.buckets]

    def iter_buckets(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """The stream of :meth:`iter_weights`, one bucket (a list of ``(hf_name, tensor)``,
        as :meth:`manifest` lists them) at a time (collective)."""
        produced: dict[int, dict[str, torch.Tensor]] = {}
        for bucket in self.buckets:
            tensors: list[torch.Tensor] | None = None
            if bucket.stage == self.pp_rank:
                tensors = []
                for name, _, idx in bucket.entries:
                    if idx not in produced:
                        produced.clear()  # the previous unit is fully bucketed by now
                        produced[idx] = self._produce(self._units[idx])
                    tensors.append(produced[idx].pop(name).to(self.dtype))
            if self.pp > 1:
                tensors = self._broadcast_bucket(bucket, tensors)
            assert tensors is not None
            yield [(name, tensor) for (name, _, _), tensor in zip(bucket.entries, tensors)]
            del tensors

    def _broadcast_bucket(
        self, bucket: _Bucket, tensors: list[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        group = parallel_state.get_pipeline_model_parallel_group()
        src = dist.get_global_rank(group, bucket.stage)
        device = next(iter(self._params.values())).device
        if tensors is not None:
            flat = torch.cat([t.reshape(-1) for t in tensors])
        else:
            flat = torch.empty(bucket.numel(), dtype=self.dtype, device=device)
        dist.broadcast(flat, src=src, group=group)
        out, offset = [], 0
        for _, shape, _ in bucket.entries:
            n = 1
            for d in shape:
                n *= d
            out.append(flat[offset : offset + n].view(shape))
            offset += n
        return out
