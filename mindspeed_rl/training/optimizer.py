"""AdamW for a Megatron model stage: fp32 master weights, DP / tied-embedding grad sync,
global grad-norm clipping that counts every parameter once across TP and PP."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from megatron.core import parallel_state


def _counts_once(param: torch.nn.Parameter, tp_rank: int) -> bool:
    """Whether this rank's copy of ``param`` enters the global norm.

    TP-replicated parameters (norms) are identical on every TP rank: count them on rank 0.
    With tied embeddings and PP > 1 the last stage's output layer is a copy of the first
    stage's embedding: count the embedding only.
    """
    if not getattr(param, "tensor_model_parallel", False) and tp_rank != 0:
        return False
    return not (
        getattr(param, "shared_embedding", False) and not parallel_state.is_pipeline_first_stage()
    )


class MegatronAdamW:
    """AdamW over fp32 master copies of the stage's parameters (a no-op copy for fp32)."""

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
    ):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.fp32 = all(p.dtype == torch.float32 for p in self.params)
        self.master = (
            self.params
            if self.fp32
            else [torch.nn.Parameter(p.detach().float().clone()) for p in self.params]
        )
        # Norms and biases are not decayed, as in Megatron.
        decay = [m for m, p in zip(self.master, self.params) if p.dim() > 1]
        no_decay = [m for m, p in zip(self.master, self.params) if p.dim() <= 1]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=lr,
            betas=betas,
            eps=eps,
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
        if not self.fp32:
            for m in self.master:
                m.grad = None

    def sync_grads(self) -> None:
        """Sum gradients over data-parallel ranks and between tied embedding copies."""
        dp_group = parallel_state.get_data_parallel_group()
        if parallel_state.get_data_parallel_world_size() > 1:
            for p in self.params:
                if p.grad is not None:
                    dist.all_reduce(p.grad, group=dp_group)
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            emb_group = parallel_state.get_embedding_group()
            for p in self.params:
                if getattr(p, "shared_embedding", False) and p.grad is not None:
                    dist.all_reduce(p.grad, group=emb_group)

    def grad_norm(self) -> float:
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
        sq = torch.zeros((), dtype=torch.float64)
        for p in self.params:
            if p.grad is not None and _counts_once(p, tp_rank):
                sq += p.grad.detach().double().pow(2).sum().cpu()
        dist.all_reduce(sq, group=parallel_state.get_model_parallel_group())
        return math.sqrt(sq.item())

    def step(self, lr: float, clip_grad: float) -> float:
        """Sync grads, clip to ``clip_grad`` (0: no clip), step; returns the pre-clip norm."""
        self.sync_grads()
        norm = self.grad_norm()
        scale = clip_grad / (norm + 1e-6) if clip_grad > 0 and norm > clip_grad else 1.0
        for p, m in zip(self.params, self.master):
            if p.grad is None:
                continue
            g = p.grad.float() if not self.fp32 else p.grad
            if scale != 1.0:
                g = g * scale
            m.grad = g
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if math.isfinite(norm):
            self.optimizer.step()
        if not self.fp32:
            with torch.no_grad():
                for p, m in zip(self.params, self.master):
                    p.copy_(m)
        self.zero_grad()
        return norm

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict()}
        if not self.fp32:
            state["master"] = [m.detach().clone() for m in self.master]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if not self.fp32:
            with torch.no_grad():
                for m, saved in zip(self.master, state["master"]):
                    m.copy_(saved)


def lr_at(iteration: int, total: int, lr: float, min_lr: float, warmup: int, decay: str) -> float:
    """Learning rate of 1-based ``iteration``: linear warm-up, then constant or cosine."""
    if warmup and iteration <= warmup:
        return lr * iteration / warmup
    if decay == "constant":
        return lr
    progress = (iteration - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
