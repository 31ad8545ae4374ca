"""The rollout engine interface shared by vLLM and the torch fallback.

Log-prob convention: a completion's ``logprobs[t]`` is log softmax(logits / temperature) of
the sampled token, without top-k / top-p truncation when those are off (the R1-Zero
defaults). The training engine computes the same quantity, so the two can be compared.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from mindspeed_rl.errors import UserError


@dataclass
class SamplingConfig:
    """How responses are sampled."""

    n: int = 8
    """Samples per prompt (the GRPO group size G)."""
    temperature: float = 1.0
    """Sampling temperature (> 0); the actor computes its log-probs at the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1
    disables it."""
    top_k: int = -1
    """-1 disables top-k."""
    max_tokens: int = 256
    """Maximum response length in tokens."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Extra tokens that end a response (the tokenizer's EOS always does)."""
    seed: int | None = 0
    """Base seed; prompt i of a call samples with seed + i, so results are reproducible."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"sampling.n must be >= 1, got {self.n}")
        if self.temperature <= 0:
            raise ValueError(
                f"sampling.temperature must be > 0, got {self.temperature} (greedy: use top_k=1)"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"sampling.top_k must be -1 (off) or >= 1, got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"sampling.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class RolloutConfig:
    """The inference engine of the hybrid actor."""

    engine: str = "vllm"
    """``vllm`` or ``torch`` (the plain-torch fallback, for machines without vLLM)."""
    infer_tp: int = 1
    """Inference tensor-parallel size: each group of ``infer_tp`` consecutive ranks runs one
    vLLM engine split across them (vLLM's external launcher, in the training processes), so
    each rank holds 1/infer_tp of the inference weights; world / infer_tp engines sample in
    parallel. 1: every rank's engine holds the whole model."""
    max_model_len: int = 1024
    """Prompt + response tokens the engine accepts."""
    dtype: str = "fp32"
    """Inference dtype: fp32, bf16 or fp16."""
    kv_cache_gb: int = 1
    """KV cache size in whole GiB on CPU (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.5
    """Fraction of device memory vLLM may use on accelerators."""
    bucket_mb: int = 64
    """Weight-sync bucket size: at most this many MB of weights in flight."""
    offload_params: bool = False
    """Accelerators: also move the training params (and the KL reference model) to host
    memory while the engine samples, so the KV cache can have their room; costs one host
    round trip of the params per iteration. The optimizer state is always moved."""
    pin_host_memory: bool = False
    """Accelerators: move the optimizer state into page-locked host buffers allocated once
    and reused every iteration (DMA copies at the link's speed) instead of megatron-core's
    ``offload_to_cpu``, which makes a fresh pageable copy each time. The buffers stay
    page-locked for the whole run, as many bytes as the optimizer state (``cli/plan.py``
    prints them per node): turn it on where the hosts have that much to spare."""
    enforce_eager: bool = True
    """Skip CUDA graphs / compilation (faster start-up; needed on CPU)."""

    def __post_init__(self) -> None:
        if self.engine not in ("vllm", "torch"):
            raise ValueError(f"rollout.engine must be 'vllm' or 'torch', got {self.engine!r}")
        if self.infer_tp < 1:
            raise ValueError(f"rollout.infer_tp must be >= 1, got {self.infer_tp}")
        if self.infer_tp > 1 and self.engine != "vllm":
            raise ValueError(
                f"rollout.infer_tp={self.infer_tp} needs rollout.engine=vllm (the torch engine "
                "runs one process per model)"
            )
        if self.bucket_mb <= 0:
            raise ValueError(
                f"rollout.bucket_mb must be > 0, got {self.bucket_mb} (it bounds the memory "
                "a weight sync adds)"
            )
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"rollout.dtype must be fp32, bf16 or fp16, got {self.dtype!r}")
        if self.kv_cache_gb < 1:
            raise ValueError(
                f"rollout.kv_cache_gb must be a whole number >= 1, got {self.kv_cache_gb}"
            )
        if self.max_model_len < 2:
            raise ValueError(f"rollout.max_model_len must be >= 2, got {self.max_model_len}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]


@dataclass
class Completion:
    """One sampled response."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    """``stop`` (EOS / stop token) or ``length`` (hit max_tokens)."""


class RolloutEngine(abc.ABC):
    """Generates responses with weights pushed in by the trainer (never read from disk)."""

    config: RolloutConfig

    @abc.abstractmethod
    def generate(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        """``sampling.n`` completions for each prompt, grouped per prompt, in prompt order."""

    @abc.abstractmethod
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the weights with HF-named tensors, consumed one at a time."""

    @abc.abstractmethod
    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence, at temperature 1."""

    @abc.abstractmethod
    def weight_bytes(self) -> int:
        """Bytes of weights this rank's engine (its share, under inference TP) holds."""

    def release_memory(self) -> None:
        """Free the KV cache and the weights while training runs (they are synced again
        before the next rollout); a no-op on CPU."""

    def resume_weights(self) -> None:
        """Re-allocate the weights' memory before a weight sync; a no-op on CPU."""

    def resume_kv_cache(self) -> None:
        """Re-allocate the KV cache after the weight sync, before sampling; a no-op on CPU."""

    def shutdown(self) -> None:
        """Release the engine for good (end of the worker's life)."""

    def check_prompts(self, prompts: list[list[int]], sampling: SamplingConfig) -> None:
        """Refuse prompts the engine cannot fit before any work starts."""
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise UserError(f"prompt {i} is empty; drop empty rows at preprocessing")
            if len(prompt) >= self.config.max_model_len:
                raise UserError(
                    f"prompt {i} has {len(prompt)} tokens but rollout.max_model_len is "
                    f"{self.config.max_model_len}; raise max_model_len or drop long prompts "
                    "at preprocessing (max prompt length)"
                )
