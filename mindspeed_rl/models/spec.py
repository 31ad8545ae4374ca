"""An architecture-neutral description of a dense decoder-only transformer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mindspeed_rl.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """Shapes and options shared by the HF and Megatron views of one model."""

    family: str
    """Model family name (``llama``, ``qwen2``, ``qwen3``)."""
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    """Key/value heads (query groups); equal to the attention heads without GQA."""
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    """Vocabulary size of the HF checkpoint (unpadded)."""
    max_position_embeddings: int
    rope_theta: float
    norm_eps: float
    tie_word_embeddings: bool
    qkv_bias: bool
    """Whether the q/k/v projections carry a bias (Qwen2 does, Llama does not)."""
    qk_norm: bool = False
    """Whether each attention head's query and key go through an RMSNorm of width head_dim
    before RoPE (Qwen3). Defaulted so that checkpoints written before the field load."""
    num_experts: int = 0
    """Routed experts per layer (0: a dense MLP). Every layer is sparse when > 0."""
    moe_topk: int = 0
    """Experts each token is sent to."""
    moe_ffn_hidden_size: int = 0
    """Hidden width of one expert's SwiGLU MLP."""
    norm_topk_prob: bool = True
    """Whether the top-k routing probabilities are renormalised to sum to 1 (Qwen3-MoE's
    ``norm_topk_prob``); otherwise they stay the softmax over all experts."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        return cls(**data)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def heads_per_group(self) -> int:
        return self.num_attention_heads // self.num_kv_heads

    def padded_vocab_size(self, tp: int, divisible_by: int) -> int:
        """Vocab rows in the Megatron embedding: a multiple of ``divisible_by * tp``."""
        multiple = divisible_by * tp
        return -(-self.vocab_size // multiple) * multiple

    def check_parallel(self, tp: int, pp: int, ep: int = 1) -> None:
        """Refuse a TP/PP/EP layout this model cannot be split into, naming the conflict."""
        if tp < 1 or pp < 1 or ep < 1:
            raise UserError(f"TP, PP and EP must be >= 1, got TP={tp} PP={pp} EP={ep}")
        if ep > 1 and not self.is_moe:
            raise UserError(f"EP={ep} needs an MoE model; this {self.family} model has no experts")
        if self.is_moe and self.num_experts % ep:
            raise UserError(
                f"EP={ep} does not divide the model's {self.num_experts} experts; "
                f"choose an EP that divides {self.num_experts}"
            )
        mlp = (
            ("expert FFN hidden size", self.moe_ffn_hidden_size)
            if self.is_moe
            else ("FFN hidden size", self.ffn_hidden_size)
        )
        for what, size in (
            ("attention heads", self.num_attention_heads),
            ("KV heads", self.num_kv_heads),
            mlp,
        ):
            if size % tp:
                raise UserError(
                    f"TP={tp} does not divide the model's {what} ({size}); "
                    f"choose a TP that divides {size}"
                )
        if pp > self.num_layers:
            raise UserError(
                f"PP={pp} is larger than the model's layer count ({self.num_layers}); "
                f"use PP <= {self.num_layers}"
            )
        if self.num_layers % pp:
            raise UserError(
                f"PP={pp} does not divide the model's layer count ({self.num_layers}); "
                f"choose a PP that divides {self.num_layers}"
            )

    def check_trainable(self, tp: int, sequence_parallel: bool) -> None:
        """Refuse a training layout megatron-core cannot run: its MoE layer trains at TP > 1
        only with sequence parallelism (forward-only passes run at any TP)."""
        if self.is_moe and tp > 1 and not sequence_parallel:
            raise UserError(
                f"TP={tp}: training an MoE model at TP > 1 needs sequence parallelism; set "
                "model.sequence_parallel=true (or use TP=1)"
            )

    def layers_per_stage(self, pp: int) -> int:
        return self.num_layers // pp
