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


H, N_POS = 8, 7  # hidden size; window positions (x B rows)


def _chunk_worker(rank: int, world: int, out_dir: str) -> None:
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel
    from mindspeed_rl.training.schedule import TokenScores, _token_scores

    initialize_model_parallel(tp=2, pp=1)
    g = torch.Generator().manual_seed(2)
    hidden_full = torch.randn(N_POS, B, H, generator=g)
    weight_full = torch.randn(PADDED, H, generator=g)
    targets_NB = torch.randint(0, VOCAB, (N_POS, B), generator=g)
    report = {}
    for chunk in (0, 2 * B, 3):  # whole window; 2 positions a chunk; 1 position (3 // B)
        hidden = hidden_full.clone().requires_grad_(True)
        weight = weight_full.chunk(2)[rank].clone().requires_grad_(True)
        calls = []

        def layer(h, weight=weight, calls=calls):
            calls.append(h.shape[0])
            return h @ weight.t(), None

        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        scores = TokenScores(VOCAB, 0.7, entropy=True, entropy_grad=True, chunk_tokens=chunk)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = _token_scores(layer, hidden, targets_NB, scores)
        forward_calls = len(calls)
        (out[..., 0].sum() + 0.3 * out[..., 1].sum()).backward()
        report[chunk] = {
            "out": out.tolist(), "hidden_grad": hidden.grad.tolist(),
            "weight_grad": weight.grad.tolist(), "forward_calls": forward_calls,
            "calls": len(calls), "largest_saved": max(saved),
        }  # fmt: skip
    (Path(out_dir) / f"chunks{rank}.json").write_text(json.dumps(report))
    destroy_model_parallel()


def test_token_scores_in_chunks_equal_the_whole_window_and_keep_no_logits(tmp_path):
    run_ranks(_chunk_worker, 2, str(tmp_path))
    for rank in range(2):
        rep = json.loads((tmp_path / f"chunks{rank}.json").read_text())
        whole = rep["0"]
        assert (whole["forward_calls"], whole["calls"]) == (1, 1)
        # The whole window keeps its [N, B, V/TP] logits for backward.
        assert whole["largest_saved"] >= N_POS * B * PADDED // 2
        for chunk, per in (("4", 2), ("3", 1)):
            rep_c = rep[chunk]
            n_chunks = -(-N_POS // per)
            # Each chunk's output layer runs once forward and once more in backward...
            assert (rep_c["forward_calls"], rep_c["calls"]) == (n_chunks, 2 * n_chunks)
            # ...and what forward keeps is the chunks' inputs, no logits.
            assert rep_c["largest_saved"] < per * B * PADDED // 2
            for key in ("out", "hidden_grad", "weight_grad"):
                assert torch.allclose(torch.tensor(rep_c[key]), torch.tensor(whole[key]),
                                      atol=1e-5), (chunk, key)  # fmt: skip
