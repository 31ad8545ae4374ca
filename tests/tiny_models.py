"""Tiny random HF models for tests: real architectures, head_dim 64, padding-needing vocab."""

from __future__ import annotations

from pathlib import Path

import torch

# A vocab of 250 needs padding at every TP (to 256 with divisible_by=128 -> 256, 512 ...).
TINY_VOCAB = 250


def make_tiny_model(family: str, out: Path, seed: int = 0) -> Path:
    """Write a random ``family`` model (config + safetensors + a byte-level tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        vocab_size=TINY_VOCAB,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if family == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=False, rope_theta=1000000.0)
        model = Qwen2ForCausalLM(config)
    elif family == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=True, rope_theta=10000.0)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(family)
    # Random init leaves norms at 1 and biases at 0; perturb them so a swapped or dropped
    # tensor cannot go unnoticed.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    return out
