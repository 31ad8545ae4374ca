"""A plain-torch rollout engine: the HF model with KV-cached sampling (``generate``).

For machines without vLLM (e.g. a CUDA box where only torch is installed). Slower than vLLM,
same interface and log-prob convention.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from mindspeed_rl.accelerator import get_accelerator
from mindspeed_rl.rollout.base import Completion, RolloutConfig, RolloutEngine, SamplingConfig


class TorchEngine(RolloutEngine):
    """HF ``AutoModelForCausalLM`` built from config.json, weights pushed by the trainer."""

    def __init__(self, config: RolloutConfig, model_dir: str, max_batch: int = 64):
        from transformers import AutoConfig, AutoModelForCausalLM

        self.config = config
        self.max_batch = max_batch
        self.device = get_accelerator().device
        hf_config = AutoConfig.from_pretrained(model_dir)
        with torch.device(self.device):
            self.model = AutoModelForCausalLM.from_config(hf_config, dtype=config.torch_dtype)
        self.model.eval()
        raw = json.loads((Path(model_dir) / "config.json").read_text())
        eos = raw.get("eos_token_id")
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = raw.get("pad_token_id") or 0
        self._params = dict(self.model.named_parameters())

    @torch.no_grad()
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in weights:
            if name not in self._params:
                raise KeyError(f"torch engine has no parameter {name}")
            self._params[name].copy_(tensor)

    @torch.no_grad()
    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        out = []
        for seq in sequences:
            ids = torch.tensor([seq], device=self.device)
            logp = torch.log_softmax(self.model(ids).logits[0].float(), dim=-1)
            out.append(logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1).tolist())
        return out

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        self.check_prompts(prompts, sampling)
        stop = self.eos_ids | set(sampling.stop_token_ids)
        groups = []
        rng_state = torch.get_rng_state()
        try:
            for i, prompt in enumerate(prompts):
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed + i)
                groups.append(self._sample_group(prompt, sampling, stop))
        finally:
            torch.set_rng_state(rng_state)
        return groups

    def _sample_group(
        self, prompt: list[int], sampling: SamplingConfig, stop: set[int]
    ) -> list[Completion]:
        max_new = min(sampling.max_tokens, self.config.max_model_len - len(prompt))
        ids = torch.tensor([prompt] * sampling.n, device=self.device)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else 0,
            max_new_tokens=max_new,
            eos_token_id=sorted(stop) or None,
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new_NT = out.sequences[:, len(prompt) :]
        logits_NTV = torch.stack(out.logits, dim=1).float() / sampling.temperature
        logp_NT = torch.log_softmax(logits_NTV, dim=-1).gather(-1, new_NT[..., None])[..., 0]
        completions = []
        for row, lps in zip(new_NT.tolist(), logp_NT.tolist()):
            end = next((t + 1 for t, tok in enumerate(row) if tok in stop), None)
            if end is None:
                completions.append(Completion(row, lps, "length"))
            else:
                completions.append(Completion(row[:end], lps[:end], "stop"))
        return completions
