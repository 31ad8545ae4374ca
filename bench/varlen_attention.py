"""The CPU kernel for packed sequences: one SDPA call per sequence (``is_causal``) against one
SDPA call over the whole pack with a block-diagonal causal mask, forward + backward, on one
core, in one run.

Packs come from the R1-like long-tailed lengths of ``bench/packing.py`` (and a pack of equal
lengths), at SmolLM2-135M's attention shape (9 query heads, 3 KV heads, head_dim 64) and at a
7B-like one (28 / 4 / 128). Prints JSON: milliseconds per pass (median), the ratio, and the
largest output difference between the two (they compute the same function).

    python bench/varlen_attention.py [--budgets 512,1024,2048,4096] [--repeats 5] [--out F]

What it cannot see: accelerator kernels (flash varlen and npu_fusion_attention take
``cu_seqlens`` directly; neither path here runs there).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from common import emit  # noqa: E402

SHAPES = {"smollm2_135m": (9, 3, 64), "7b_like": (28, 4, 128)}


def pack_lengths(budget: int, kind: str, rng: random.Random) -> list[int]:
    """Sequence lengths filling ``budget`` tokens: long-tailed (median budget/16) or equal."""
    lengths: list[int] = []
    while True:
        if kind == "long_tail":
            n = int(min(budget / 2, max(16, rng.lognormvariate(math.log(budget / 16), 0.6))))
        else:
            n = budget // 8
        if sum(lengths) + n > budget:
            return lengths or [n]
        lengths.append(n)


def block_causal_mask(lengths: list[int]):
    import torch

    total = sum(lengths)
    allowed = torch.zeros(total, total, dtype=torch.bool)
    start = 0
    for n in lengths:
        allowed[start : start + n, start : start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        start += n
    return allowed


def time_pass(fn, q, k, v, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats + 1):  # the first is a warm-up
        for t in (q, k, v):
            t.grad = None
        start = time.perf_counter()
        out = fn(q, k, v)
        out.float().pow(2).sum().backward()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2] * 1e3, out.detach()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", default="512,1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    import torch.nn.functional as F

    from mindspeed_rl.accelerator.attention import causal_varlen_attention

    torch.set_num_threads(1)
    rng = random.Random(0)
    rows = []
    for shape_name, (heads, groups, dim) in SHAPES.items():
        for budget in (int(b) for b in args.budgets.split(",")):
            for kind in ("long_tail", "equal"):
                lengths = pack_lengths(budget, kind, rng)
                total = sum(lengths)
                q = torch.randn(total, heads, dim, requires_grad=True)
                k = torch.randn(total, groups, dim, requires_grad=True)
                v = torch.randn(total, groups, dim, requires_grad=True)
                cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
                scale = 1 / math.sqrt(dim)
                allowed = block_causal_mask(lengths)

                def per_sequence(q, k, v, cu=cu, lengths=lengths, scale=scale):
                    return causal_varlen_attention(q, k, v, cu, max(lengths), scale)

                def masked(q, k, v, allowed=allowed, scale=scale):
                    out = F.scaled_dot_product_attention(
                        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                        attn_mask=allowed, scale=scale, enable_gqa=True,
                    )  # fmt: skip
                    return out.transpose(0, 1)

                per_ms, per_out = time_pass(per_sequence, q, k, v, args.repeats)
                mask_ms, mask_out = time_pass(masked, q, k, v, args.repeats)
                rows.append(
                    {
                        "shape": shape_name,
                        "lengths": kind,
                        "tokens": total,
                        "sequences": len(lengths),
                        "per_sequence_ms": round(per_ms, 2),
                        "block_mask_ms": round(mask_ms, 2),
                        "block_mask_over_per_sequence": round(mask_ms / per_ms, 2),
                        "max_abs_diff": float((per_out - mask_out).abs().max()),
                    }
                )
                print(rows[-1], file=sys.stderr)
    emit(
        {
            "bench": "varlen_attention",
            "what": "causal attention over a pack, fp32 forward + backward, one CPU thread",
            "cases": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
