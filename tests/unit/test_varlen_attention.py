"""The packed-sequence attention kernel of the accelerator layer: each sequence attends to
itself only, GQA without repeated K/V, and on CPU torch's flash kernel, not the math path that
materialises the scores."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.profiler import profile

from mindspeed_rl.accelerator.attention import causal_varlen_attention, varlen_kernel

LENGTHS = [5, 1, 17, 9]


def _inputs(heads: int = 6, groups: int = 2, dim: int = 16):
    torch.manual_seed(0)
    total = sum(LENGTHS)
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(total, heads, dim, requires_grad=True)
    k = torch.randn(total, groups, dim, requires_grad=True)
    v = torch.randn(total, groups, dim, requires_grad=True)
    return q, k, v, cu


def _reference(q, k, v, scale):
    """Explicit scores with a block-diagonal causal mask, K/V repeated per query group."""
    total, heads, _ = q.shape
    allowed = torch.zeros(total, total, dtype=torch.bool)
    start = 0
    for n in LENGTHS:
        allowed[start : start + n, start : start + n] = torch.ones(n, n).tril().bool()
        start += n
    rep = heads // k.shape[1]
    k_THD, v_THD = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores_HTT = torch.einsum("thd,shd->hts", q, k_THD) * scale
    probs = scores_HTT.masked_fill(~allowed, float("-inf")).softmax(-1)
    return torch.einsum("hts,shd->thd", probs, v_THD)


def test_packed_sequences_attend_to_themselves_only():
    q, k, v, cu = _inputs()
    scale = 1 / math.sqrt(q.shape[-1])
    out = causal_varlen_attention(q, k, v, cu, max(LENGTHS), scale)
    want = _reference(q, k, v, scale)
    assert torch.allclose(out, want, atol=1e-5)
    # One causal block over the whole pack is a different function (the test can fail).
    whole = causal_varlen_attention(q, k, v, cu[[0, -1]], int(cu[-1]), scale)
    assert not torch.allclose(whole, want, atol=1e-3)
    # Gradients agree too.
    (g_out,) = torch.autograd.grad(out.pow(2).sum(), q)
    (g_want,) = torch.autograd.grad(want.pow(2).sum(), q)
    assert torch.allclose(g_out, g_want, atol=1e-4)


def test_cpu_uses_the_flash_kernel_not_the_math_path():
    q, k, v, cu = _inputs()
    with profile() as prof:
        out = causal_varlen_attention(q, k, v, cu, max(LENGTHS), 0.25)
        out.sum().backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops, sorted(ops)
    assert "aten::_scaled_dot_product_attention_math" not in ops
    # The same call on 3-D inputs would take the math path: the check above can fail.
    with profile() as prof:
        F.scaled_dot_product_attention(
            q[:5].transpose(0, 1), k[:5].transpose(0, 1), v[:5].transpose(0, 1),
            is_causal=True, enable_gqa=True,
        )  # fmt: skip
    assert "aten::_scaled_dot_product_attention_math" in {e.key for e in prof.key_averages()}


def test_kernel_choice_by_device_and_dtype():
    assert varlen_kernel("cpu", torch.bfloat16) == "sdpa_per_sequence"
    assert varlen_kernel("npu", torch.bfloat16) == "npu_fusion_attention"
    assert varlen_kernel("npu", torch.float32) == "sdpa_per_sequence"
    assert varlen_kernel("cuda", torch.float32) == "sdpa_per_sequence"
    assert varlen_kernel("cuda", torch.bfloat16) in ("flash_attn_varlen", "torch_varlen_attn")
