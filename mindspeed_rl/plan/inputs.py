"""From the typed GRPO config (and the model's HF config.json) to a :class:`PlanInput`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mindspeed_rl.config.grpo import REPO_ROOT, GRPOConfig, ModelConfig, resolve
from mindspeed_rl.errors import UserError
from mindspeed_rl.models.spec import ModelSpec
from mindspeed_rl.plan.memory import PlanInput

MODEL_PRESETS = REPO_ROOT / "configs" / "model"


def hf_config_path(model: ModelConfig) -> Path:
    """The HF config.json the plan reads: ``model.hf_dir``'s, or, when that directory is not
    on this machine, the tracked copy ``configs/model/NAME.config.json`` beside the model
    preset ``NAME.yaml`` whose ``hf_dir`` is the same path."""
    own = resolve(model.hf_dir) / "config.json"
    if own.is_file():
        return own
    for preset in sorted(MODEL_PRESETS.glob("*.yaml")):
        data = yaml.safe_load(preset.read_text()) or {}
        copy = preset.with_name(preset.stem + ".config.json")
        if data.get("hf_dir") == model.hf_dir and copy.is_file():
            return copy
    raise UserError(
        f"model.hf_dir: {own} not found and no configs/model/*.config.json stands in for it; "
        "point model.hf_dir at an HF model directory (config.json is enough)"
    )


def load_spec(path: Path) -> ModelSpec:
    """The :class:`ModelSpec` of an HF config.json, through the model's family."""
    from mindspeed_rl.models.registry import family_for_architecture

    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON HF config ({err})") from None
    family = family_for_architecture((raw.get("architectures") or [""])[0])
    return family.spec_from_hf_config(raw)


def longest_prompt(cfg: GRPOConfig, read_dataset: bool = True) -> tuple[int, str]:
    """(tokens, where the figure comes from): the training set's longest prompt from its
    preprocessing summary (unless ``read_dataset`` is False), else what
    ``rollout.max_model_len - sampling.max_tokens`` leaves."""
    summary = resolve(cfg.data.train_prefix + "_summary.json")
    if read_dataset and cfg.data.train_prefix and summary.is_file():
        tokens = json.loads(summary.read_text()).get("prompt_tokens", {}).get("max")
        if isinstance(tokens, int) and tokens > 0:
            return tokens, "longest prompt of data.train_prefix"
    left = max(1, cfg.rollout.max_model_len - cfg.sampling.max_tokens)
    return left, "rollout.max_model_len - sampling.max_tokens"


def plan_input(
    cfg: GRPOConfig, device_memory_gb: float | None = None, read_dataset: bool = True
) -> PlanInput:
    """The numbers the memory model needs, from a validated config. ``device_memory_gb``
    (when given) replaces ``resources.device_memory_gb``; ``read_dataset=False`` ignores the
    dataset's prompt lengths (a plan that does not depend on what this machine holds).
    ``resources.device=auto`` is planned as an accelerator (``cpu`` as the host)."""
    m, o, t = cfg.model, cfg.optim, cfg.trainer
    spec = load_spec(hf_config_path(m))
    spec.check_parallel(m.tp, m.pp, m.ep)
    mini = t.mini_batch_size or cfg.samples_per_iteration
    prompt, _ = longest_prompt(cfg, read_dataset)
    per_pass = t.micro_batch_size
    if t.max_tokens_per_micro_batch:  # samples per pass when every one is as long as it can be
        longest = min(prompt + cfg.sampling.max_tokens, cfg.rollout.max_model_len)
        per_pass = max(1, t.max_tokens_per_micro_batch // longest)
    return PlanInput(
        spec=spec,
        world=cfg.resources.world_size,
        devices_per_node=cfg.resources.devices_per_node,
        tp=m.tp,
        sequence_parallel=m.sequence_parallel,
        pp=m.pp,
        vpp=m.virtual_pipeline_stages,
        ep=m.ep,
        params_dtype=m.params_dtype,
        recompute=m.recompute_granularity,
        recompute_method=m.recompute_method,
        recompute_num_layers=m.recompute_num_layers,
        grad_reduce_in_fp32=o.grad_reduce_in_fp32 or m.params_dtype == "fp32",
        distributed_optimizer=o.use_distributed_optimizer,
        micro_batch=per_pass,
        microbatches_per_step=max(1, -(-mini // (cfg.dp * per_pass))),
        pack_prompts=t.pack_prompts,
        max_tokens=t.max_tokens_per_micro_batch,
        logits_chunk=t.logits_chunk_tokens,
        prompt_tokens=prompt,
        response_tokens=cfg.sampling.max_tokens,
        max_model_len=cfg.rollout.max_model_len,
        prompts_per_iteration=cfg.data.prompts_per_iteration,
        samples_per_prompt=cfg.sampling.n,
        reference_model=cfg.loss.kl_coef > 0,
        infer_tp=cfg.rollout.infer_tp,
        infer_dtype=cfg.rollout.dtype,
        gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
        cpu_kv_cache_gb=cfg.rollout.kv_cache_gb,
        bucket_mb=cfg.rollout.bucket_mb,
        offload_params=cfg.rollout.offload_params,
        pin_host_memory=cfg.rollout.pin_host_memory,
        on_accelerator=cfg.resources.device != "cpu",
        device_memory_gb=(
            cfg.resources.device_memory_gb if device_memory_gb is None else device_memory_gb
        ),
        rollout_workers=cfg.resources.rollout_workers,
    )
