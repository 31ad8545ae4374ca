"""Per-device memory of a GRPO run, predicted from the model's shape and the run's layout.

Every figure is a pure function of a :class:`PlanInput` (itself built from the HF config and
the typed GRPO config by :mod:`mindspeed_rl.plan.inputs`); nothing is measured and nothing
is kept per model. The model of memory follows what the hybrid actor holds:

- training: megatron-core's parameter shard, its DDP gradient buffer, the Adam state (and fp32
  main params), the activations of the micro-batches in flight, the fp32 log-softmax over the
  response window;
- rollout: the training parameters (still resident), vLLM's weights at the inference TP and
  its KV cache; the gradients and the optimizer state are on the host (accelerators) meanwhile;
- on CPU the "device" is the host: nothing is offloaded and vLLM-CPU is never put to sleep.

Activation memory is Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models"), per layer and micro-batch, 16-bit, no sequence parallelism::

    s*b*h * (10 + 24/t) + 5*a*s^2*b/t

adapted to the layer megatron-core builds here (local spec): its 24 = 8 (Q, K, V, attention
output) + 16 (a 4h GeLU MLP); the unfused SwiGLU MLP of width f stores its 2f-wide first
projection, silu(gate) and the product, ``8f/h``; the attention core keeps the fp32 softmax
and its bf16 copy, ``6*a*s^2*b`` (no dropout, whose masks the paper's 5 counts). So::

    s*b*h * (10 + (8 + 8f/h)/t) + 6*a*s^2*b/t

The log-prob computation over the response window keeps the bf16 logits and four fp32
[tokens, vocab/TP] tensors at its peak (the upcast, the shifted logits, their exp and one
temporary): 18 bytes per element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mindspeed_rl.models.spec import ModelSpec

GB = 2**30
"""One "GB" as device makers count memory (an 80 GB card holds 80 * 2**30 bytes)."""

VOCAB_DIVISIBLE_BY = 128
"""Megatron pads the vocabulary to a multiple of this times TP (``cli/convert_ckpt.py``)."""

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class PlanInput:
    """Everything the memory model reads: the model's shape and the run's layout, as numbers."""

    spec: ModelSpec
    world: int
    """Ranks in the run (one device each)."""
    devices_per_node: int = 8
    """Ranks per node: the most TP may span."""
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    """Virtual pipeline stages (model chunks per stage)."""
    ep: int = 1
    """Expert parallelism: MoE experts split over groups of ``ep`` data-parallel ranks."""
    params_dtype: str = "bf16"
    recompute: str = ""
    """"" (none), full or selective."""
    recompute_method: str = "uniform"
    recompute_num_layers: int = 1
    grad_reduce_in_fp32: bool = True
    distributed_optimizer: bool = False
    micro_batch: int = 1
    """Samples per forward/backward (per data-parallel rank)."""
    microbatches_per_step: int = 1
    """Micro-batches one optimizer step runs on one data-parallel rank."""
    pack_prompts: bool = False
    """A micro-batch is one row: one prompt then ``micro_batch`` responses."""
    sequence_parallel: bool = False
    """Activations outside the TP regions split along the sequence over TP."""
    max_tokens: int = 0
    """Token budget of a micro-batch whose samples are packed back to back (THD, varlen
    attention: no ``S x S`` scores); 0: padded rows of ``micro_batch`` samples."""
    logits_chunk: int = 0
    """``trainer.logits_chunk_tokens``: positions whose logits exist at once; 0: all."""
    prompt_tokens: int = 512
    """The longest prompt."""
    response_tokens: int = 512
    """``sampling.max_tokens``."""
    max_model_len: int = 1024
    prompts_per_iteration: int = 8
    samples_per_prompt: int = 8
    reference_model: bool = False
    """A frozen reference copy of the policy is held (``loss.kl_coef > 0``)."""
    infer_tp: int = 1
    infer_dtype: str = "bf16"
    gpu_memory_utilization: float = 0.5
    cpu_kv_cache_gb: float = 1.0
    bucket_mb: int = 64
    on_accelerator: bool = True
    """False on CPU: the host is the device, so offloading frees nothing."""
    offload_params: bool = False
    """Move the training parameters to the host during rollout."""
    pin_host_memory: bool = False
    """The optimizer state goes to page-locked host buffers kept for the whole run."""
    device_memory_gb: float = 0.0
    """Memory of one device; 0: unknown (vLLM's KV cache is then what the batch needs)."""
    rollout_workers: int = 0
    """Generation-only ranks (``resources.rollout_workers``) beside the ``world`` training
    ranks: the training ranks then hold no engine, and the rollout phase is theirs."""

    @property
    def dp(self) -> int:
        return self.world // (self.tp * self.pp)

    @property
    def seq_tokens(self) -> int:
        """Tokens of the longest training sequence (prompt + response, at most max_model_len)."""
        return min(self.prompt_tokens + self.response_tokens, self.max_model_len)


@dataclass(frozen=True)
class Term:
    """One holder of device memory in one phase."""

    name: str
    bytes: float
    detail: str = ""
    where: str = "device"
    """device (counted), host (offloaded: shown, not counted) or freed (not allocated)."""

    @property
    def on_device(self) -> bool:
        return self.where == "device"


@dataclass(frozen=True)
class PhasePlan:
    """What one device holds during one phase, on its worst pipeline stage."""

    name: str
    stage: int
    terms: tuple[Term, ...]

    @property
    def peak(self) -> float:
        return sum(t.bytes for t in self.terms if t.on_device)

    @property
    def largest(self) -> Term:
        return max((t for t in self.terms if t.on_device), key=lambda t: t.bytes)


@dataclass(frozen=True)
class MemoryPlan:
    """The phases of one run and the device they must fit on."""

    input: PlanInput
    phases: tuple[PhasePlan, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)
    """Reasons the run cannot start whatever the total (e.g. vLLM's weights above its share)."""

    @property
    def peak(self) -> float:
        return max(p.peak for p in self.phases)

    @property
    def peak_phase(self) -> PhasePlan:
        return max(self.phases, key=lambda p: p.peak)

    @property
    def device_bytes(self) -> float:
        return self.input.device_memory_gb * GB

    def phase_fits(self, phase: PhasePlan) -> bool:
        return self.device_bytes <= 0 or phase.peak <= self.device_bytes

    @property
    def fits(self) -> bool:
        return not self.problems and all(self.phase_fits(p) for p in self.phases)


# -- parameters ------------------------------------------------------------------------------


def layer_params(spec: ModelSpec, tp: int, ep: int = 1) -> int:
    """Parameters of one decoder layer on one TP rank: the attention and MLP matrices (and the
    q/k/v bias) split over TP, the two RMSNorm weights (and Qwen3's [head_dim] q/k norms)
    replicated. MoE layers hold their EP rank's experts and the router. The activation terms
    stay the dense layer's (``ffn_hidden_size``; Qwen3-30B-A3B's 6144 is its top-8 x 768)."""
    h, d = spec.hidden_size, spec.head_dim
    q, kv = spec.num_attention_heads * d, spec.num_kv_heads * d
    attention = h * (q + 2 * kv) + q * h + ((q + 2 * kv) if spec.qkv_bias else 0)
    mlp = 3 * h * spec.ffn_hidden_size  # gate, up, down
    router = 0
    if spec.is_moe:  # this EP rank's experts' gate, up, down (split over TP); the router
        mlp = expert_params(spec, ep) // spec.num_layers
        router = spec.num_experts * h
    return (attention + mlp) // tp + 2 * h + (2 * d if spec.qk_norm else 0) + router


def expert_params(spec: ModelSpec, ep: int = 1) -> int:
    """Expert matrices of the whole model held by one EP rank, before TP."""
    return (
        spec.num_layers * spec.num_experts // ep * 3 * spec.hidden_size * spec.moe_ffn_hidden_size
    )


def stage_params(
    spec: ModelSpec, tp: int, pp: int, stage: int, padded_vocab: bool = True, ep: int = 1
) -> int:
    """Parameters one rank of pipeline ``stage`` holds: its layers, the embedding on the first
    stage, the final norm and output layer on the last. Tied embeddings are one tensor at
    PP=1; at PP>1 the last stage keeps its own copy of the word embeddings (Megatron)."""
    vocab = spec.padded_vocab_size(tp, VOCAB_DIVISIBLE_BY) if padded_vocab else spec.vocab_size
    embedding = vocab * spec.hidden_size // tp
    total = spec.layers_per_stage(pp) * layer_params(spec, tp, ep)
    first, last = stage == 0, stage == pp - 1
    if first:
        total += embedding
    if last:
        total += spec.hidden_size  # final norm
        if not spec.tie_word_embeddings or pp > 1:
            total += embedding
    return total


def checkpoint_bytes(x: PlanInput) -> tuple[int, int]:
    """(weights, optimizer state) bytes of one saved checkpoint, all ranks together: the
    weights in ``params_dtype`` once (one DP replica writes them), Adam's two fp32 moments and,
    when the params are narrower than fp32, the fp32 master copy (every parameter once,
    whether one DP rank or all of them hold it)."""
    params = total_params(x.spec)
    width = DTYPE_BYTES[x.params_dtype]
    return params * width, params * (8 + (4 if width < 4 else 0))


def total_params(spec: ModelSpec) -> int:
    """Parameters of the whole HF model (unpadded vocabulary, tied embeddings counted once)."""
    return stage_params(spec, 1, 1, 0, padded_vocab=False)


def param_bytes(x: PlanInput, stage: int) -> float:
    """The training parameters of ``stage``'s shard, in ``model.params_dtype``."""
    return stage_params(x.spec, x.tp, x.pp, stage, ep=x.ep) * DTYPE_BYTES[x.params_dtype]


def grad_bytes(x: PlanInput, stage: int) -> float:
    """megatron-core DDP's contiguous gradient buffer: one value per parameter of the shard,
    fp32 when ``optim.grad_reduce_in_fp32`` (or fp32 params)."""
    per = 4 if x.grad_reduce_in_fp32 else DTYPE_BYTES[x.params_dtype]
    return stage_params(x.spec, x.tp, x.pp, stage, ep=x.ep) * per


def optimizer_bytes(x: PlanInput, stage: int) -> float:
    """Adam's exp_avg and exp_avg_sq in fp32 (8 B/param), plus fp32 main params when training
    in 16 bits (4 B/param); divided over DP with the distributed optimizer (experts over
    their expert-data-parallel ranks, DP / EP)."""
    per = 8 + (4 if DTYPE_BYTES[x.params_dtype] < 4 else 0)
    total = stage_params(x.spec, x.tp, x.pp, stage, ep=x.ep) * per
    if not x.distributed_optimizer:
        return total
    experts = 0.0
    if x.spec.is_moe:
        experts = expert_params(x.spec, x.ep) / x.tp / x.pp * per
    return (total - experts) / x.dp + experts / max(1, x.dp // x.ep)


# -- activations -----------------------------------------------------------------------------


def layer_activation_bytes(
    spec: ModelSpec,
    seq: int,
    batch: int,
    tp: int,
    params_dtype: str,
    attention: bool = True,
    sequence_parallel: bool = False,
) -> float:
    """Activations one layer stores for backward (Korthikanti et al. 2022 adapted to this
    layer; see the module docstring). ``attention=False`` drops the ``6*a*s^2*b`` softmax
    term (selective recompute re-runs the attention core; varlen kernels keep no scores).
    Sequence parallelism splits the ``10*s*b*h`` outside the TP regions (norms, residuals,
    the inputs of the first linears) over TP as well. The paper counts 16-bit activations;
    fp32 training doubles them."""
    h, a = spec.hidden_size, spec.num_attention_heads
    sbh = seq * batch * h
    outside = 10 / tp if sequence_parallel else 10
    per_sbh = outside + (8 + 8 * spec.ffn_hidden_size / h) / tp
    total = sbh * per_sbh + (6 * a * seq * seq * batch / tp if attention else 0)
    return total * DTYPE_BYTES[params_dtype] / 2


def layer_input_bytes(
    spec: ModelSpec, seq: int, batch: int, params_dtype: str, tp: int = 1
) -> float:
    """A layer's input, all full recompute keeps of it (split over ``tp`` with sequence
    parallelism, replicated over TP without)."""
    return seq * batch * spec.hidden_size * DTYPE_BYTES[params_dtype] / tp


def micro_batch_shape(x: PlanInput) -> tuple[int, int]:
    """(sequence length, rows) of one training micro-batch: padded rows of prompt + response,
    with ``pack_prompts`` one row of the prompt followed by every response, with a token
    budget one row of the budget (or of the longest sample, which gets a pass of its own)."""
    if x.max_tokens:
        return max(x.max_tokens, x.seq_tokens), 1
    if x.pack_prompts:
        return x.prompt_tokens + x.micro_batch * x.response_tokens, 1
    return x.seq_tokens, x.micro_batch


def stage_activation_bytes(x: PlanInput) -> float:
    """Activations of one micro-batch over one pipeline stage's layers, with the configured
    recompute: none, selective (no attention term), or full (layer inputs at the checkpoints
    plus the full activations of the block being recomputed)."""
    seq, batch = micro_batch_shape(x)
    layers = x.spec.layers_per_stage(x.pp)
    # Packed sequences go through a varlen kernel that keeps no S x S scores.
    sp = x.sequence_parallel and x.tp > 1
    full_layer = layer_activation_bytes(
        x.spec, seq, batch, x.tp, x.params_dtype, attention=not x.max_tokens, sequence_parallel=sp
    )
    if x.recompute == "selective":
        return layers * layer_activation_bytes(
            x.spec, seq, batch, x.tp, x.params_dtype, attention=False, sequence_parallel=sp
        )
    if x.recompute != "full":
        return layers * full_layer
    saved = layer_input_bytes(x.spec, seq, batch, x.params_dtype, x.tp if sp else 1)
    n = min(x.recompute_num_layers, layers)
    if x.recompute_method == "uniform":
        return math.ceil(layers / n) * saved + n * full_layer
    # block: the first n layers are checkpointed, the others keep everything
    return n * saved + max(layers - n, 1) * full_layer


def microbatches_in_flight(x: PlanInput, stage: int) -> float:
    """Micro-batches whose activations ``stage`` holds at once under 1F1B: PP - stage (the
    first stage holds PP). Interleaved (vpp > 1): megatron-core's warm-up count plus one, in
    model chunks, over vpp."""
    if x.pp == 1:
        return 1
    if x.vpp == 1:
        in_flight: float = x.pp - stage
    else:
        in_flight = ((x.pp - stage - 1) * 2 + (x.vpp - 1) * x.pp + 1) / x.vpp
    return min(in_flight, x.microbatches_per_step)


def logits_bytes(x: PlanInput) -> float:
    """The output window on the last stage: the positions whose logits exist at once (the
    response tokens of a pass, or one chunk of them) x vocab/TP, as bf16 logits plus the four
    fp32 tensors the log-softmax holds at its peak (18 B each)."""
    vocab = x.spec.padded_vocab_size(x.tp, VOCAB_DIVISIBLE_BY) // x.tp
    return logits_chunk_tokens(x) * vocab * (2 + 4 * 4)


def logits_chunk_tokens(x: PlanInput) -> int:
    """Positions whose logits exist at once: the window, or a chunk of it (a chunk holds at
    least one position of every row of a padded micro-batch)."""
    window = logits_tokens(x)
    if not x.logits_chunk:
        return window
    rows = 1 if (x.max_tokens or x.pack_prompts) else x.micro_batch
    return min(window, max(x.logits_chunk // rows, 1) * rows)


def logits_tokens(x: PlanInput) -> int:
    """Positions of one micro-batch whose logits the loss reads: its response tokens (with a
    token budget at most the budget, or one longest response)."""
    if x.max_tokens:
        return max(x.max_tokens, x.response_tokens)
    return x.response_tokens * x.micro_batch


# -- rollout ---------------------------------------------------------------------------------


def vllm_weight_bytes(x: PlanInput) -> float:
    """vLLM's copy of the whole model in ``rollout.dtype``, one TP shard of it."""
    return stage_params(x.spec, x.infer_tp, 1, 0, padded_vocab=False) * DTYPE_BYTES[x.infer_dtype]


def kv_bytes_per_token(x: PlanInput) -> float:
    """K and V of every layer for one token on one inference rank (KV heads are replicated
    when infer TP exceeds them)."""
    kv_heads = max(1, x.spec.num_kv_heads // x.infer_tp)
    return 2 * x.spec.num_layers * kv_heads * x.spec.head_dim * DTYPE_BYTES[x.infer_dtype]


def concurrent_sequences(x: PlanInput) -> int:
    """Sequences one engine holds when it samples its share of the batch all at once."""
    replicas = max(1, (x.rollout_workers or x.world) // x.infer_tp)
    return math.ceil(x.prompts_per_iteration * x.samples_per_prompt / replicas)


def kv_needed_bytes(x: PlanInput) -> float:
    """KV cache for every concurrent sequence at ``rollout.max_model_len``."""
    return concurrent_sequences(x) * x.max_model_len * kv_bytes_per_token(x)


def vllm_budget_bytes(x: PlanInput) -> float:
    """What vLLM may take on an accelerator: ``gpu_memory_utilization`` of the device."""
    return x.gpu_memory_utilization * x.device_memory_gb * GB


def kv_cache_bytes(x: PlanInput) -> float:
    """The KV cache vLLM allocates: on CPU ``rollout.kv_cache_gb``; on an accelerator of known
    size everything its budget leaves after the weights (vLLM preallocates it all, and runs
    the batch in waves when it is smaller than the need); of unknown size, the need."""
    if not x.on_accelerator:
        return x.cpu_kv_cache_gb * GB
    if x.device_memory_gb <= 0:
        return kv_needed_bytes(x)
    return max(0.0, vllm_budget_bytes(x) - vllm_weight_bytes(x))


# -- the phases ------------------------------------------------------------------------------


def _recompute_text(x: PlanInput) -> str:
    if x.recompute == "full":
        return f"full recompute, {x.recompute_method} x{x.recompute_num_layers}"
    return "selective recompute" if x.recompute == "selective" else "no recompute"


def training_phase(x: PlanInput, stage: int) -> PhasePlan:
    """What ``stage``'s device holds during the update (forward + backward + optimizer step)."""
    seq, rows = micro_batch_shape(x)
    in_flight = microbatches_in_flight(x, stage)
    shard = f"TP{x.tp}" + (f" PP{x.pp} stage {stage}" if x.pp > 1 else "")
    opt_where = (
        f"distributed over DP{x.dp}" if x.distributed_optimizer else f"replicated x DP{x.dp}"
    )
    grads_dtype = "fp32" if x.grad_reduce_in_fp32 else x.params_dtype
    terms = [
        Term("parameters", param_bytes(x, stage), f"{x.params_dtype}, {shard} shard"),
        Term("gradients", grad_bytes(x, stage), f"{grads_dtype} DDP buffer"),
        Term("optimizer state", optimizer_bytes(x, stage), f"Adam fp32, {opt_where}"),
        Term(
            "activations",
            stage_activation_bytes(x) * in_flight,
            f"{rows} x {seq} tokens, {_recompute_text(x)}"
            + (f", {in_flight:g} micro-batches in flight" if in_flight != 1 else ""),
        ),
    ]
    if stage == x.pp - 1:
        window, at_once = logits_tokens(x), logits_chunk_tokens(x)
        detail = f"{window} response tokens" + (
            f", {at_once} at a time" if at_once < window else ""
        )
        terms.append(Term("logits window", logits_bytes(x), detail))
    if x.reference_model:
        terms.append(Term("reference model", param_bytes(x, stage), "frozen policy copy"))
    if x.rollout_workers:  # the engines are on the generation ranks
        terms.append(Term("weight-send bucket", x.bucket_mb * 2**20, "rank 0, rollout.bucket_mb"))
        return PhasePlan("training", stage, tuple(terms))
    # vLLM sleeps at level 2 during training on accelerators (weights and KV cache freed; every
    # rollout starts with a full weight sync); vLLM-CPU keeps everything.
    terms += [
        Term(
            "vLLM weights",
            vllm_weight_bytes(x),
            "asleep (level 2)" if x.on_accelerator else "vLLM-CPU never sleeps",
            where="freed" if x.on_accelerator else "device",
        ),
        Term(
            "KV cache",
            kv_cache_bytes(x),
            "",
            where="freed" if x.on_accelerator else "device",
        ),
    ]
    return PhasePlan("training", stage, tuple(terms))


def rollout_phase(x: PlanInput, stage: int) -> PhasePlan:
    """What ``stage``'s device holds while its vLLM engine samples."""
    kv_detail = f"{concurrent_sequences(x)} seqs x {x.max_model_len} need " + _gb(
        kv_needed_bytes(x)
    )
    if not x.on_accelerator:
        kv_detail = f"rollout.kv_cache_gb; {kv_detail}"
    elif x.device_memory_gb > 0:
        kv_detail = f"rest of gpu_memory_utilization {x.gpu_memory_utilization:g}; {kv_detail}"
    if x.rollout_workers:  # a generation-only rank: the engine and nothing else
        return PhasePlan("rollout", 0, (
            Term("vLLM weights", vllm_weight_bytes(x),
                 f"{x.infer_dtype}, infer TP{x.infer_tp}, generation-only rank"),
            Term("KV cache", kv_cache_bytes(x), kv_detail),
            Term("weight-receive bucket", x.bucket_mb * 2**20, "rollout.bucket_mb"),
        ))  # fmt: skip
    terms = [
        Term(
            "parameters",
            param_bytes(x, stage),
            "",
            where="host" if x.offload_params and x.on_accelerator else "device",
        ),
        Term("gradients", grad_bytes(x, stage), "", where="freed"),
        Term(
            "optimizer state",
            optimizer_bytes(x, stage),
            "",
            where="host" if x.on_accelerator else "device",
        ),
    ]
    if x.reference_model:
        where = "host" if x.offload_params and x.on_accelerator else "device"
        terms.append(Term("reference model", param_bytes(x, stage), where=where))
    terms += [
        Term("vLLM weights", vllm_weight_bytes(x), f"{x.infer_dtype}, infer TP{x.infer_tp}"),
        Term("KV cache", kv_cache_bytes(x), kv_detail),
        Term("weight-sync bucket", x.bucket_mb * 2**20, "rollout.bucket_mb"),
    ]
    return PhasePlan("rollout", stage, tuple(terms))


def _worst(phases: list[PhasePlan]) -> PhasePlan:
    return max(phases, key=lambda p: p.peak)


def plan_memory(x: PlanInput) -> MemoryPlan:
    """Both phases on the worst pipeline stage of each (first or last), and what would stop
    vLLM from starting at all."""
    stages = sorted({0, x.pp - 1})
    training = _worst([training_phase(x, s) for s in stages])
    rollout = _worst([rollout_phase(x, s) for s in stages])
    problems = []
    if x.on_accelerator and x.device_memory_gb > 0:
        budget, weights = vllm_budget_bytes(x), vllm_weight_bytes(x)
        if weights >= budget:
            problems.append(
                f"vLLM weights {_gb(weights)} exceed rollout.gpu_memory_utilization "
                f"{x.gpu_memory_utilization:g} x {x.device_memory_gb:g} GB = {_gb(budget)}"
            )
        elif kv_cache_bytes(x) < x.max_model_len * kv_bytes_per_token(x):
            problems.append(
                f"vLLM's KV cache {_gb(kv_cache_bytes(x))} cannot hold one sequence of "
                f"rollout.max_model_len={x.max_model_len}"
            )
    return MemoryPlan(x, (training, rollout), tuple(problems))


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"
