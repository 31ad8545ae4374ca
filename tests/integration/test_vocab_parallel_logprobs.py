"""Vocab-parallel log-probs / entropy at TP=2 equal a full log-softmax over the real
vocabulary (padding excluded), in value and in gradient."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mindspeed_rl.utils.spawn import run_ranks

VOCAB, PADDED, B, S = 250, 256, 2, 5


def _full_logits() -> torch.Tensor:
    return torch.randn(B, S, PADDED, generator=torch.Generator().manual_seed(0)) * 3


def _targets() -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, S), generator=torch.Generator().manual_seed(1))


def _worker(rank: int, world: int, out_dir: str) -> None:
    from mindspeed_rl.training.logprobs import vocab_parallel_logprobs
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel

    initialize_model_parallel(tp=2, pp=1)
    local = _full_logits().chunk(2, dim=-1)[rank].clone().requires_grad_(True)
    lp, ent = vocab_parallel_logprobs(local, _targets(), VOCAB, temperature=0.7, with_entropy=True)
    (lp.sum() + 0.3 * ent.sum()).backward()
    (Path(out_dir) / f"rank{rank}.json").write_text(
        json.dumps({"lp": lp.tolist(), "ent": ent.tolist(), "grad": local.grad.tolist()})
    )
    destroy_model_parallel()


def test_matches_full_softmax(tmp_path):
    run_ranks(_worker, 2, str(tmp_path))
    full = _full_logits()[..., :VOCAB].clone().requires_grad_(True)
    logp = torch.log_softmax(full / 0.7, dim=-1)
    want_lp = logp.gather(-1, _targets()[..., None])[..., 0]
    want_ent = -(logp.exp() * logp).sum(-1)
    (want_lp.sum() + 0.3 * want_ent.sum()).backward()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rep in ranks:
        assert torch.allclose(torch.tensor(rep["lp"]), want_lp, atol=1e-5)
        assert torch.allclose(torch.tensor(rep["ent"]), want_ent, atol=1e-5)
    grad = torch.cat([torch.tensor(r["grad"]) for r in ranks], dim=-1)
    assert torch.allclose(grad[..., :VOCAB], full.grad, atol=1e-5)
    assert torch.count_nonzero(grad[..., VOCAB:]) == 0  # padding rows get no gradient
