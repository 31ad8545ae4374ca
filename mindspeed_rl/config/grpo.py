"""The GRPO run's configuration: one typed section per component."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mindspeed_rl.algorithms.advantages import ADVANTAGE_ESTIMATORS, MIN_GROUP_SIZE
from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig
from mindspeed_rl.config.logging import LoggingConfig
from mindspeed_rl.config.structured import build
from mindspeed_rl.errors import UserError
from mindspeed_rl.rewards.registry import RewardConfig
from mindspeed_rl.rollout.base import RolloutConfig, SamplingConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve(path: str) -> Path:
    """A config path: absolute, or relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass
class ModelConfig:
    """The policy: where its weights come from and how it is split."""

    hf_dir: str = "models/SmolLM2-135M-Instruct"
    """HF model directory: config, tokenizer (for decoding responses) and, when ``load_dir``
    is empty, the weights to convert (into <trainer.output_dir>/init_mcore, again whenever
    these files change)."""
    load_dir: str = ""
    """Megatron checkpoint (from ``cli/convert_ckpt.py hf2mcore``) at this run's TP/PP.
    Empty: convert ``hf_dir`` into ``<trainer.output_dir>/init_mcore`` at start-up."""
    tp: int = 1
    """Tensor-parallel size of training."""
    sequence_parallel: bool = False
    """With tp > 1: split the activations outside attention and the MLP (norms, residuals,
    dropout-free adds) along the sequence over the TP ranks (megatron-core's sequence
    parallelism: activations / TP, all-gathers and reduce-scatters instead of all-reduces).
    Needed to train MoE models at tp > 1. No effect at tp = 1."""
    pp: int = 1
    """Pipeline-parallel size of training."""
    ep: int = 1
    """Expert-parallel size of training (MoE models): each group of ``ep`` data-parallel ranks
    splits the experts of every layer; must divide the experts and the data-parallel size."""
    params_dtype: str = "fp32"
    """Training dtype: fp32 or bf16 (bf16 keeps fp32 main params in the optimizer)."""
    virtual_pipeline_stages: int = 1
    """Model chunks per pipeline stage: > 1 runs megatron-core's interleaved 1F1B schedule
    (smaller pipeline bubble); needs pp > 1 and the layers divisible by pp * this."""
    recompute_granularity: str = ""
    """Activation recompute: "" (none), full (re-run whole layers in backward) or selective
    (re-run only the attention core)."""
    recompute_method: str = "uniform"
    """With full recompute: uniform (checkpoint every recompute_num_layers layers as a block)
    or block (checkpoint the first recompute_num_layers layers of each stage)."""
    recompute_num_layers: int = 1
    """With full recompute: layers per checkpointed block (uniform) or layers checkpointed
    per stage (block)."""

    def __post_init__(self) -> None:
        if self.tp < 1 or self.pp < 1:
            raise ValueError(f"model.tp and model.pp must be >= 1, got {self.tp}, {self.pp}")
        if self.ep < 1:
            raise ValueError(f"model.ep must be >= 1, got {self.ep}")
        if self.params_dtype not in ("fp32", "bf16"):
            raise ValueError(f"model.params_dtype must be fp32 or bf16, got {self.params_dtype!r}")
        if self.virtual_pipeline_stages < 1:
            raise ValueError(
                f"model.virtual_pipeline_stages must be >= 1, got {self.virtual_pipeline_stages}"
            )
        if self.virtual_pipeline_stages > 1 and self.pp < 2:
            raise ValueError("model.virtual_pipeline_stages > 1 needs model.pp >= 2")
        if self.recompute_granularity not in ("", "full", "selective"):
            raise ValueError(
                "model.recompute_granularity must be '', full or selective, got "
                f"{self.recompute_granularity!r}"
            )
        if self.recompute_method not in ("uniform", "block"):
            raise ValueError(
                f"model.recompute_method must be uniform or block, got {self.recompute_method!r}"
            )
        if self.recompute_num_layers < 1:
            raise ValueError(
                f"model.recompute_num_layers must be >= 1, got {self.recompute_num_layers}"
            )


@dataclass
class ValSetConfig:
    """One more held-out set validated on ``trainer.val_interval``."""

    prefix: str = ""
    """Output prefix of the preprocessed set (scored with the training scorers' accuracy)."""
    n: int = 1
    """Samples per prompt besides the greedy one: avg@n and pass@n when > 1."""
    prompts: int = 64
    """The first this many prompts of the set."""
    scorer: str = ""
    """Its accuracy scorer (a built-in such as choice for GPQA-style multiple choice, or
    module:function); empty: reward.accuracy's. The format scorer is logged beside it."""

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("data.val_sets.<name>.prefix is empty; name the preprocessed set")
        if self.n < 1 or self.prompts < 1:
            raise ValueError("data.val_sets.<name>.n and .prompts must be >= 1")
        if self.scorer:
            from mindspeed_rl.rewards.registry import resolve_scorer

            try:
                resolve_scorer(self.scorer)
            except ValueError as err:
                raise ValueError(f"scorer: {err}") from None


@dataclass
class DataConfig:
    """Prompts: preprocessed datasets (``cli/preprocess_data.py``) and batching."""

    train_prefix: str = "data/gsm8k/train"
    """Output prefix of the preprocessed training set."""
    val_prefix: str = ""
    """Output prefix of the held-out set for validation; empty: no validation."""
    prompts_per_iteration: int = 8
    """B: prompts per iteration (each gets ``sampling.n`` responses)."""
    val_prompts: int = 64
    """Held-out prompts scored at each validation (the first ones of the set)."""
    val_sets: dict[str, ValSetConfig] = field(default_factory=dict)
    """More held-out sets by name, each with its own samples per prompt (n), prompts and
    accuracy scorer (e.g. {gpqa: {prefix: data/gpqa_diamond/test, n: 4, scorer: choice}}),
    validated with val_prefix and logged as val/<name>/accuracy (greedy pass@1),
    val/<name>/format, val/<name>/avg_at_k and val/<name>/pass_at_k (k = its n)."""
    seed: int = 1234
    """Shuffle seed of the training prompts."""
    assistant_prefix: str | None = None
    """Text the prompt template ends with inside the assistant turn (e.g. "<think>"); it is
    put back in front of each response before scoring. None: the one the training set was
    preprocessed with (its summary records it)."""

    def __post_init__(self) -> None:
        if self.prompts_per_iteration < 1:
            raise ValueError(
                f"data.prompts_per_iteration must be >= 1, got {self.prompts_per_iteration}"
            )
        if self.val_prompts < 1:
            raise ValueError(f"data.val_prompts must be >= 1, got {self.val_prompts}")
        for name in self.val_sets:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(
                    f"data.val_sets: {name!r} must be letters, digits, '_' or '-' (it names "
                    "metrics val/<name>/...)"
                )


@dataclass
class OptimConfig:
    """AdamW on the actor."""

    lr: float = 1e-6
    """Peak learning rate (reached after warm-up)."""
    min_lr: float = 0.0
    """Floor of the cosine decay (equal to lr: constant after warm-up)."""
    warmup_iterations: int = 0
    """Iterations of linear warm-up from 0 to lr; 0: none."""
    decay: str = "constant"
    """constant or cosine (over trainer.iterations)."""
    weight_decay: float = 0.0
    """AdamW (decoupled) weight decay of the weight matrices; norms and biases are not decayed."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW beta1, beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip_grad: float = 1.0
    """Global gradient-norm clip (megatron-core's norm over every parameter once); 0: off."""
    use_distributed_optimizer: bool = False
    """Shard the fp32 main params and Adam state over the data-parallel ranks (megatron-core's
    distributed optimizer, ZeRO-1): optimizer memory per rank / DP; gradients are
    reduce-scattered and the updated params all-gathered."""
    overlap_grad_reduce: bool = False
    """Overlap the data-parallel gradient reduction with backward (megatron-core DDP buckets);
    useful on accelerators, no gain on CPU."""
    grad_reduce_in_fp32: bool = True
    """Accumulate and reduce gradients in fp32 (DDP buffers) when params are bf16."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.decay not in ("constant", "cosine"):
            raise ValueError(f"optim.decay must be constant or cosine, got {self.decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.clip_grad < 0:
            raise ValueError(f"optim.clip_grad must be >= 0, got {self.clip_grad}")


@dataclass
class AlgorithmConfig:
    """Advantage estimation and the DAPO options."""

    advantage: str = "grpo"
    """grpo: (r - mean) / (std + eps) per group; drgrpo: r - mean (no std division)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and refill with more rollouts."""
    max_extra_rollouts: int = 2
    """With dynamic sampling: at most this many extra rollout rounds per iteration."""
    overlong_buffer: int = 0
    """DAPO overlong shaping: tokens before ``sampling.max_tokens`` over which the penalty
    grows to ``overlong_penalty``; 0 turns it off."""
    overlong_penalty: float = 1.0
    """The largest overlong penalty (subtracted from the reward at ``sampling.max_tokens``)."""
    max_staleness: int = 0
    """Policy versions a training sample may lag the policy it updates. 0: on-policy (each
    batch is generated by the weights it trains). 1: one-step-off-policy: the next batch is
    generated, on ranks of its own (``resources.rollout_workers``), while this one trains, by
    the weights before this update; the engine's log-probs of that older policy feed
    ``loss.rollout_correction``. Deeper queues (fully async) are not built."""

    def __post_init__(self) -> None:
        if self.advantage not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"algorithm.advantage must be one of {', '.join(ADVANTAGE_ESTIMATORS)}, "
                f"got {self.advantage!r}"
            )
        if self.max_extra_rollouts < 0 or self.overlong_buffer < 0:
            raise ValueError("algorithm.max_extra_rollouts and overlong_buffer must be >= 0")
        if self.max_staleness not in (0, 1):
            raise ValueError(
                f"algorithm.max_staleness must be 0 (on-policy) or 1 (one-step-off-policy), "
                f"got {self.max_staleness}: deeper asynchronous queues are not built"
            )


@dataclass
class TrainerConfig:
    """The loop."""

    iterations: int = 100
    """Iterations to train (one batch of rollouts and its updates each)."""
    mini_batch_size: int = 0
    """Samples per optimizer step; 0: the whole iteration's batch (one step per iteration)."""
    micro_batch_size: int = 4
    """Samples per forward/backward pass on a data-parallel rank (with pack_prompts: at most
    this many responses of one prompt, in one row). Unused with max_tokens_per_micro_batch."""
    max_tokens_per_micro_batch: int = 0
    """Pack samples (prompt + response) back to back, with no padding, into forward/backward
    passes of at most this many tokens (a longer sample gets a pass of its own); samples are
    spread over data-parallel ranks by tokens. Attention stays within each sample (THD,
    ``cu_seqlens``; a varlen kernel per device), so log-probs and updates equal the padded
    path's. 0: padded rows of micro_batch_size samples, each micro-batch as long as its
    longest sample."""
    logits_chunk_tokens: int = 1024
    """At most this many positions of a pass have logits at once (the log-prob and its
    log-softmax hold ~18 B x vocab/TP per position): a pass with more response tokens is
    scored in chunks, each chunk's logits recomputed in backward rather than kept, so the
    last stage's peak stops growing with response length (one more output-layer forward per
    chunk is the price; a pass with fewer tokens pays nothing). 0: the whole pass at once."""
    pack_prompts: bool = False
    """Train the responses of one prompt in one row after a single copy of the prompt (each
    response attends to the prompt and itself; RoPE positions continue from the prompt), so
    the prompt's forward and backward run once per micro-batch, not once per response. Same
    log-probs as separate rows (tested). Pays when prompts are long next to responses (the
    CPU quick-start: 2.3x faster updates); the attention over the packed row is dense, so
    with long responses it costs more than it saves: leave it off there."""
    ppo_epochs: int = 1
    """Passes over each iteration's batch."""
    val_interval: int = 0
    """Validate every N iterations (and before the first); 0: never."""
    val_n: int = 1
    """Samples per validation prompt: pass@1 is greedy; avg@k uses k samples."""
    save_interval: int = 0
    """Checkpoint every N iterations (and at the end); 0: only at the end."""
    output_dir: str = "runs/grpo"
    """Run directory: metrics, curves, checkpoints, the exported HF model."""
    resume: str = "auto"
    """auto: continue from the newest complete checkpoint in output_dir (an iter_N folder with
    its trainer state; the tracker file is not trusted) if any; never: start from iteration 1."""
    keep_checkpoints: int = 0
    """Keep only the newest this many checkpoints in output_dir/checkpoints (older ones are
    deleted after each save); 0 keeps them all. A 32B save is hundreds of GB (cli/plan.py
    prints the size of one)."""
    overwrite: bool = False
    """Let a run that starts from iteration 1 replace a previous run's metrics and checkpoints
    in output_dir (without it, such a start is refused)."""
    export_hf: bool = True
    """Convert the final checkpoint to an HF model in <output_dir>/hf."""
    seed: int = 1234
    """Seed of the model-parallel RNGs and of sampling (rollout and validation seeds are derived
    from it and the iteration)."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"trainer.iterations must be >= 1, got {self.iterations}")
        if self.micro_batch_size < 1 or self.mini_batch_size < 0 or self.ppo_epochs < 1:
            raise ValueError(
                "trainer.micro_batch_size and ppo_epochs must be >= 1, mini_batch_size >= 0"
            )
        if self.max_tokens_per_micro_batch < 0:
            raise ValueError(
                "trainer.max_tokens_per_micro_batch must be >= 0 (0: padded micro-batches), "
                f"got {self.max_tokens_per_micro_batch}"
            )
        if self.logits_chunk_tokens < 0:
            raise ValueError(
                "trainer.logits_chunk_tokens must be >= 0 (0: no chunks), "
                f"got {self.logits_chunk_tokens}"
            )
        if self.max_tokens_per_micro_batch and self.pack_prompts:
            raise ValueError(
                "trainer.pack_prompts and max_tokens_per_micro_batch are two packings; "
                "set one (pack_prompts=false or max_tokens_per_micro_batch=0)"
            )
        if self.keep_checkpoints < 0:
            raise ValueError(
                f"trainer.keep_checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints}"
            )
        if self.resume not in ("auto", "never"):
            raise ValueError(f"trainer.resume must be auto or never, got {self.resume!r}")
        if self.val_interval < 0 or self.save_interval < 0 or self.val_n < 1:
            raise ValueError("trainer.val_interval and save_interval must be >= 0, val_n >= 1")


@dataclass
class ResourcesConfig:
    """Where the workers run (Ray)."""

    nnodes: int = 1
    """Nodes in the Ray cluster the run uses."""
    devices_per_node: int = 2
    """Ranks per node: CPU cores on CPU, cards on GPU / NPU."""
    device: str = "auto"
    """auto, cpu, cuda or npu."""
    ray_address: str = ""
    """Ray cluster to join (``auto`` for one started with ``ray start``); empty: a local one."""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each rank's worker."""
    device_memory_gb: float = 0.0
    """Memory of one device in GB; > 0: refuse at start-up a layout whose predicted peak
    (``cli/plan.py``) exceeds it; 0: not checked."""
    placement_timeout_s: float = 600.0
    """How long to wait for Ray to place every rank before stopping with what is missing."""
    rollout_workers: int = 0
    """Ranks that only generate (a vLLM engine each, no training state), beside the
    ``nnodes * devices_per_node`` ranks that then only train; the trainer sends them the
    weights after each update over a collective group of its own. 0: every rank trains and
    generates in turn (the hybrid engine). Needed by ``algorithm.max_staleness=1``."""

    def __post_init__(self) -> None:
        if self.nnodes < 1 or self.devices_per_node < 1:
            raise ValueError("resources.nnodes and devices_per_node must be >= 1")
        if not self.placement_timeout_s > 0:
            raise ValueError(
                f"resources.placement_timeout_s must be > 0, got {self.placement_timeout_s}"
            )
        if not 0 <= self.device_memory_gb < math.inf:
            raise ValueError(
                f"resources.device_memory_gb must be a finite number >= 0, got "
                f"{self.device_memory_gb}"
            )
        if self.rollout_workers < 0:
            raise ValueError(f"resources.rollout_workers must be >= 0, got {self.rollout_workers}")
        if self.device not in ("auto", "cpu", "cuda", "npu"):
            raise ValueError(
                f"resources.device must be auto, cpu, cuda or npu, got {self.device!r}"
            )

    @property
    def world_size(self) -> int:
        return self.nnodes * self.devices_per_node


@dataclass
class GRPOConfig:
    """Everything a GRPO run needs; built from YAML by :func:`load_config`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: GRPOLossConfig = field(default_factory=GRPOLossConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def dp(self) -> int:
        return self.resources.world_size // (self.model.tp * self.model.pp)

    @property
    def samples_per_iteration(self) -> int:
        return self.data.prompts_per_iteration * self.sampling.n

    @property
    def updates_per_batch(self) -> int:
        """Optimizer steps each iteration's batch feeds (mini-batches x PPO epochs)."""
        mini = self.trainer.mini_batch_size or self.samples_per_iteration
        return self.trainer.ppo_epochs * (self.samples_per_iteration // mini)

    def validate(self, check_files: bool = True) -> None:
        """Cross-section checks; each failure names the keys involved."""
        m, world = self.model, self.resources.world_size
        if world % (m.tp * m.pp):
            raise UserError(
                f"resources: {world} ranks are not a multiple of model.tp*model.pp={m.tp * m.pp}"
            )
        if self.dp % m.ep:
            raise UserError(
                f"model.ep={m.ep} must divide the data-parallel size {self.dp} "
                "(resources ranks / model.tp / model.pp): experts split over data-parallel ranks"
            )
        infer_tp, per_node = self.rollout.infer_tp, self.resources.devices_per_node
        generators = self.resources.rollout_workers
        if generators % infer_tp:
            raise UserError(
                f"rollout.infer_tp={infer_tp} must divide resources.rollout_workers={generators} "
                "(each engine is infer_tp generation ranks)"
            )
        if self.algorithm.max_staleness and not generators:
            raise UserError(
                "algorithm.max_staleness=1 generates the next batch while this one trains, "
                "which needs ranks that only generate: set resources.rollout_workers (e.g. 1)"
            )
        if generators and self.rollout.engine != "vllm":
            raise UserError(
                f"resources.rollout_workers needs rollout.engine=vllm, got {self.rollout.engine}"
            )
        if not generators and per_node % infer_tp:
            raise UserError(
                f"rollout.infer_tp={infer_tp} must divide resources.devices_per_node={per_node} "
                "(an inference engine's ranks are consecutive ranks of one node)"
            )
        mini = self.trainer.mini_batch_size or self.samples_per_iteration
        if self.samples_per_iteration % mini:
            raise UserError(
                f"trainer.mini_batch_size={mini} does not divide the batch "
                f"(data.prompts_per_iteration*sampling.n={self.samples_per_iteration})"
            )
        if not self.trainer.max_tokens_per_micro_batch and mini % (
            self.dp * self.trainer.micro_batch_size
        ):
            raise UserError(
                f"trainer.mini_batch_size={mini} is not a multiple of data-parallel size "
                f"{self.dp} x trainer.micro_batch_size {self.trainer.micro_batch_size}"
            )
        if self.loss.loss_agg_mode == "seq-mean-token-sum-norm" and (
            self.loss.max_response_length != self.sampling.max_tokens
        ):
            raise UserError(
                "loss.max_response_length must equal sampling.max_tokens for "
                "seq-mean-token-sum-norm"
            )
        if self.algorithm.overlong_buffer >= self.sampling.max_tokens:
            raise UserError("algorithm.overlong_buffer must be smaller than sampling.max_tokens")
        need = MIN_GROUP_SIZE[self.algorithm.advantage]
        if self.sampling.n < need:
            raise UserError(
                f"algorithm.advantage={self.algorithm.advantage} needs sampling.n >= {need} "
                "(a group)"
            )
        if not check_files:
            return
        hf_config = resolve(m.hf_dir) / "config.json"
        if not hf_config.is_file():
            bundled = Path(m.hf_dir).name == "SmolLM2-135M-Instruct"
            fix = ("run `python tools/prepare_smollm2.py`" if bundled else
                   "place the HF model there (config, tokenizer, safetensors)")  # fmt: skip
            raise UserError(
                f"model.hf_dir: {hf_config} not found; {fix} or point model.hf_dir at an HF "
                "model directory"
            )
        from mindspeed_rl.models.registry import family_for_architecture

        raw = json.loads(hf_config.read_text())
        spec = family_for_architecture((raw.get("architectures") or [""])[0]).spec_from_hf_config(
            raw
        )
        spec.check_parallel(m.tp, m.pp, m.ep)
        spec.check_trainable(m.tp, m.sequence_parallel)
        heads, kv = spec.num_attention_heads, spec.num_kv_heads
        if heads % infer_tp or (kv % infer_tp and infer_tp % kv):
            raise UserError(
                f"rollout.infer_tp={infer_tp} cannot split {heads} attention heads / {kv} KV "
                "heads: it must divide the heads and divide, or be a multiple of, the KV heads"
            )
        for key, prefix in self._prefixes():
            if prefix and not resolve(prefix + "_prompt.idx").is_file():
                raise UserError(
                    f"{key}: no preprocessed dataset at {resolve(prefix)}_prompt.idx; run "
                    "`bash examples/data/preprocess_data.sh NAME` first"
                )
        self._check_load_dir(spec)
        self._check_prompt_lengths()
        self._check_tokenizer()

    def _prefixes(self) -> list[tuple[str, str]]:
        """(config key, prefix) of every dataset the run reads."""
        return [
            ("data.train_prefix", self.data.train_prefix),
            ("data.val_prefix", self.data.val_prefix),
            *((f"data.val_sets.{name}.prefix", v.prefix) for name, v in self.data.val_sets.items()),
        ]

    def _check_load_dir(self, spec) -> None:
        """``model.load_dir`` is a readable checkpoint of the configured model at the run's
        TP / PP (the workers would find out later, on every node)."""
        m = self.model
        if not m.load_dir:
            return
        from mindspeed_rl.checkpoint import megatron_format as mf

        _, meta = mf.read_meta(resolve(m.load_dir))
        if (meta.tp, meta.pp) != (m.tp, m.pp):
            raise UserError(
                f"model.load_dir {m.load_dir} is TP={meta.tp} PP={meta.pp} but the run uses "
                f"model.tp={m.tp} model.pp={m.pp}; convert it again with --tp {m.tp} --pp {m.pp}"
            )
        fields = ("family", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads",
                  "ffn_hidden_size", "vocab_size")  # fmt: skip
        differ = [f"{f} {getattr(meta.spec, f)} vs {getattr(spec, f)}" for f in fields
                  if getattr(meta.spec, f, None) != getattr(spec, f, None)]  # fmt: skip
        if differ:
            raise UserError(
                f"model.load_dir {m.load_dir} holds another model than model.hf_dir "
                f"({'; '.join(differ)}); point them at the same model"
            )

    def _check_prompt_lengths(self) -> None:
        """The longest prompt plus sampling.max_tokens fits rollout.max_model_len (else the
        engine would refuse it hours into a run, or cut the response short)."""
        from mindspeed_rl.data.indexed import PromptDataset

        for key, prefix in self._prefixes():
            if not prefix:
                continue
            dataset = PromptDataset(resolve(prefix))  # its index is mapped while it lives
            longest = int(dataset.prompt_lengths.max()) if len(dataset) else 0
            if longest + self.sampling.max_tokens > self.rollout.max_model_len:
                raise UserError(
                    f"{key}: the longest prompt has {longest} tokens; with "
                    f"sampling.max_tokens={self.sampling.max_tokens} that exceeds "
                    f"rollout.max_model_len={self.rollout.max_model_len}; raise max_model_len "
                    "or preprocess with a lower max_prompt_length"
                )

    def _check_tokenizer(self) -> None:
        """The datasets were tokenized with the policy's tokenizer (their summaries say which)."""
        from mindspeed_rl.data.tokenization import tokenizer_fingerprint

        model_print = None
        for key, prefix in self._prefixes():
            summary_file = resolve(prefix + "_summary.json") if prefix else None
            if summary_file is None or not summary_file.is_file():
                continue
            summary = json.loads(summary_file.read_text())
            if "tokenizer_fingerprint" not in summary:  # preprocessed before it was recorded
                continue
            model_print = model_print or tokenizer_fingerprint(resolve(self.model.hf_dir))
            if summary["tokenizer_fingerprint"] != model_print:
                raise UserError(
                    f"{key}: {resolve(prefix)} was tokenized with {summary.get('tokenizer')}, "
                    f"whose vocabulary differs from model.hf_dir's; preprocess again with "
                    f"tokenizer={self.model.hf_dir}"
                )


def load_config(
    config_name: str, overrides: list[str] | None = None, config_dir: str | Path | None = None
) -> GRPOConfig:
    """Compose ``<config_dir>/<config_name>.yaml`` (default dir: the repo's ``configs/``) with
    Hydra overrides into a typed config."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config_dir = Path(config_dir).resolve() if config_dir else REPO_ROOT / "configs"
    if not (config_dir / f"{config_name}.yaml").is_file():
        presets = sorted(p.stem for p in config_dir.glob("grpo_*.yaml"))
        raise UserError(f"no config {config_name!r} in {config_dir}; presets: {', '.join(presets)}")
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(list(overrides or []))
        groups = {p.name for p in config_dir.iterdir() if p.is_dir()}
        group_overrides = [o.input_line for o in parsed if o.key_or_group in groups]
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name=config_name, overrides=group_overrides)
        data = OmegaConf.to_container(cfg, resolve=False)
        # Value overrides go onto the plain tree, so any field of the typed config can be set
        # (not only the keys a preset spells out); unknown keys are refused by build() below.
        for o in parsed:
            if o.key_or_group in groups:
                continue
            _set_dotted(data, o.key_or_group, o.value(), delete=o.is_delete())
        data = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(" ".join(str(err).split())) from None
    return build(GRPOConfig, data)  # type: ignore[arg-type]


def _set_dotted(tree: dict, key: str, value, delete: bool = False) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {key}: {part} is not a section")
    if delete:
        node.pop(leaf, None)
    else:
        node[leaf] = value
