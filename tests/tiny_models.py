"""Tiny random HF models for tests: real architectures, head_dim 64, padding-needing vocab."""

from __future__ import annotations

from pathlib import Path

import torch

# A vocab of 250 needs padding at every TP (to 256 with divisible_by=128 -> 256, 512 ...).
TINY_VOCAB = 250


def make_tiny_model(
    family: str,
    out: Path,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
    num_layers: int = 4,
    hidden_size: int = 256,
    num_attention_heads: int | None = None,
    tie_word_embeddings: bool | None = None,
) -> Path:
    """Write a random ``family`` model (config + safetensors).

    With ``tokenizer_dir`` the model takes that tokenizer (files copied, vocab matched), so
    it can run the whole pipeline on real preprocessed prompts. Heads are hidden / 64 unless
    ``num_attention_heads`` is given; head_dim stays 64 (vLLM-CPU's smallest), so more heads
    give a model whose head_dim is not hidden / heads. ``tie_word_embeddings`` overrides the
    family's default (Llama tied, Qwen untied).
    """
    import shutil

    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
    )

    torch.manual_seed(seed)
    vocab = TINY_VOCAB
    if tokenizer_dir is not None:
        vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    heads = num_attention_heads or hidden_size // 64
    common = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=64,
        vocab_size=vocab,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    tied = (
        {"llama": True}.get(family, False) if tie_word_embeddings is None else tie_word_embeddings
    )
    if family == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=tied, rope_theta=1000000.0)
        model = Qwen2ForCausalLM(config)
    elif family == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=tied, rope_theta=10000.0)
        model = LlamaForCausalLM(config)
    elif family == "qwen3":
        config = Qwen3Config(**common, tie_word_embeddings=tied, rope_theta=1000000.0)
        model = Qwen3ForCausalLM(config)
    elif family == "qwen3_moe":
        # 4 experts, top-2, renormalised (as Qwen3-30B-A3B), every layer sparse.
        config = Qwen3MoeConfig(
            **common, tie_word_embeddings=tied, rope_theta=1000000.0, num_experts=4,
            num_experts_per_tok=2, moe_intermediate_size=hidden_size // 2,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        )  # fmt: skip
        model = Qwen3MoeForCausalLM(config)
    else:
        raise ValueError(family)
    # Random init leaves norms at 1 and biases at 0; perturb them so a swapped or dropped
    # tensor cannot go unnoticed.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer_dir is not None:
        for f in Path(tokenizer_dir).iterdir():
            if f.name.startswith("tokenizer") or f.name in (
                "chat_template.jinja",
                "special_tokens_map.json",
            ):
                shutil.copy2(f, out / f.name)
    return out
