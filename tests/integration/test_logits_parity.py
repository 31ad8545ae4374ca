"""Converted Megatron shards, run on TP x PP gloo processes, give the HF model's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mindspeed_rl.checkpoint.convert import hf_to_mcore
from mindspeed_rl.utils.spawn import run_ranks

LAYOUTS = [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 1), (1, 2, 2)]  # (TP, PP, virtual stages)


def _megatron_logits_worker(
    rank: int, world: int, jobs: list[tuple[str, str, str]], vpp: int = 1, ep: int = 1
) -> None:
    """For each (checkpoint, tokens file, output file): forward and save the full logits."""
    from megatron.core import parallel_state, tensor_parallel

    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.training.model import build_chunks
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import MicroBatch, causal_mask, run_schedule

    _, meta = mf.read_meta(Path(jobs[0][0]))
    initialize_model_parallel(meta.tp, meta.pp, vpp=vpp, ep=ep)
    for ckpt, tokens_path, out_path in jobs:
        chunks, meta, _ = build_chunks(ckpt, torch.float32)
        tokens_BS = torch.load(tokens_path)
        b, s = tokens_BS.shape
        mb = MicroBatch(
            tokens_BS=tokens_BS,
            position_ids_BS=torch.arange(s).expand(b, s),
            attention_mask_B1SS=causal_mask(s),
            extra={},
        )

        def gather_logits(logits_BSV_local, _mb, vocab=meta.spec.vocab_size):
            full = tensor_parallel.gather_from_tensor_model_parallel_region(logits_BSV_local)
            return full.sum() * 0, torch.ones(()), full[..., :vocab].detach()

        results = run_schedule(chunks, [mb], gather_logits, forward_only=True)
        if parallel_state.is_pipeline_last_stage() and (
            parallel_state.get_tensor_model_parallel_rank() == 0
        ):
            torch.save(results[0], out_path)
    destroy_model_parallel()


def _hf_logits(model_dir: Path, tokens_BS: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(tokens_BS).logits


def _check_parity(
    tmp_path: Path,
    model_dirs: list[Path],
    tp: int,
    pp: int,
    vocab: int,
    vpp: int = 1,
    tol: float = 1e-4,
    ep: int = 1,
) -> None:
    tokens_BS = torch.randint(0, vocab, (2, 17), generator=torch.Generator().manual_seed(0))
    tokens_path = tmp_path / "tokens.pt"
    torch.save(tokens_BS, tokens_path)
    jobs = []
    for i, model_dir in enumerate(model_dirs):
        ckpt = tmp_path / f"mcore-{i}"
        hf_to_mcore(model_dir, ckpt, tp=tp, pp=pp)
        jobs.append((str(ckpt), str(tokens_path), str(tmp_path / f"logits-{i}.pt")))
    # With EP > 1 the data-parallel replicas (world / TP / PP of them) hold different experts
    # and feed the same tokens; their tokens cross ranks in the all-to-all dispatch.
    run_ranks(_megatron_logits_worker, tp * pp * ep, jobs, vpp, ep)
    for i, model_dir in enumerate(model_dirs):
        expected = _hf_logits(model_dir, tokens_BS)
        got = torch.load(tmp_path / f"logits-{i}.pt")
        assert got.shape == expected.shape
        diff = (got - expected).abs().max().item()
        print(
            f"logits parity {model_dir.name} TP={tp} PP={pp} VPP={vpp} EP={ep}: max |diff| {diff:.3g}"
        )
        assert diff <= tol, f"{model_dir.name} TP={tp} PP={pp}: max |diff| {diff}"


@pytest.mark.parametrize(("tp", "pp", "vpp"), LAYOUTS)
def test_tiny_models_logits_match_hf(tmp_path, tiny_qwen2_dir, tiny_llama_dir, tp, pp, vpp):
    from tests.tiny_models import TINY_VOCAB

    _check_parity(tmp_path, [tiny_qwen2_dir, tiny_llama_dir], tp, pp, TINY_VOCAB, vpp)


@pytest.mark.parametrize(("tp", "pp", "vpp"), LAYOUTS)
def test_tiny_qwen3_logits_match_hf(
    tmp_path, tiny_qwen3_dir, tiny_qwen3_wide_heads_dir, tp, pp, vpp
):
    # Per-head q/k RMSNorm, and (second model) head_dim 64 with hidden 128 / 4 heads, tied.
    from tests.tiny_models import TINY_VOCAB

    _check_parity(tmp_path, [tiny_qwen3_dir, tiny_qwen3_wide_heads_dir], tp, pp, TINY_VOCAB, vpp)


@pytest.mark.parametrize(("tp", "pp", "vpp"), LAYOUTS)
def test_tiny_qwen3_moe_logits_match_hf(tmp_path, tiny_qwen3_moe_dir, tp, pp, vpp):
    # megatron-core's MoE layer (router, top-2 of 4 SequentialMLP experts, all-to-all
    # dispatcher) against transformers' Qwen3-MoE.
    from tests.tiny_models import TINY_VOCAB

    _check_parity(tmp_path, [tiny_qwen3_moe_dir], tp, pp, TINY_VOCAB, vpp)


@pytest.mark.parametrize(("tp", "pp", "ep"), [(1, 1, 2), (1, 2, 2), (2, 1, 2)])
def test_tiny_qwen3_moe_logits_match_hf_with_expert_parallelism(
    tmp_path, tiny_qwen3_moe_dir, tp, pp, ep
):
    # The same (EP-free) checkpoint: each EP rank loads its 2 of the 4 experts.
    from tests.tiny_models import TINY_VOCAB

    _check_parity(tmp_path, [tiny_qwen3_moe_dir], tp, pp, TINY_VOCAB, ep=ep)


@pytest.mark.slow
def test_smollm2_logits_match_hf_at_tp3(tmp_path, smollm2_dir):
    # SmolLM2-135M has 9 attention heads and 3 KV heads: TP=2 cannot split it, TP=3 can.
    # 30 layers, logits up to ~30 in fp32: HF's attention and Megatron's unfused one round
    # differently. Measured 1.14e-4 with today's install, for this code and for the code
    # before megatron-core's schedules were adopted alike (a git worktree of 9e33553).
    _check_parity(tmp_path, [smollm2_dir], tp=3, pp=1, vocab=49152, tol=2e-4)
