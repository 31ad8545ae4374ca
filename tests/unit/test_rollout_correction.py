"""Rollout corrections (TIS / MIS) against hand-computed values, and their purpose: with an
engine that samples from a perturbed distribution, the corrected gradient is the on-policy one."""

from __future__ import annotations

import math

import pytest
import torch

from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig, grpo_loss
from mindspeed_rl.algorithms.rollout_correction import correction_weights, mismatch_kl

LN = math.log
# Two responses: 3 tokens and 2 tokens (the last position is padding).
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
# log w = old - rollout per token: w = 3, 1/4, 1 and 1.5, 0.5.
ROLLOUT = torch.zeros(2, 3)
OLD = torch.tensor([[LN(3.0), LN(0.25), 0.0], [LN(1.5), LN(0.5), 7.0]])


def test_token_tis_truncates_each_ratio_at_the_cap():
    w, m = correction_weights(OLD, ROLLOUT, MASK, "tis", "token", cap=2.0)
    assert w.flatten().tolist() == pytest.approx([2.0, 0.25, 1.0, 1.5, 0.5, 0.0])
    assert m["rollout_correction/corrected_frac"].item() == pytest.approx(1 / 5)
    assert m["rollout_correction/weight_mean"].item() == pytest.approx(
        (2 + 0.25 + 1 + 1.5 + 0.5) / 5
    )
    assert m["rollout_correction/weight_max"].item() == pytest.approx(2.0)


def test_sequence_and_geometric_levels_weigh_whole_responses():
    # Products: 3 * 1/4 * 1 = 0.75 and 1.5 * 0.5 = 0.75; the padding's log w (7) is ignored.
    w, _ = correction_weights(OLD, ROLLOUT, MASK, "tis", "sequence", cap=2.0)
    assert w.flatten().tolist() == pytest.approx([0.75] * 5 + [0.0])
    # Geometric means: 0.75 ** (1/3) and 0.75 ** (1/2).
    w, _ = correction_weights(OLD, ROLLOUT, MASK, "tis", "geometric", cap=2.0)
    assert w[0].tolist() == pytest.approx([0.75 ** (1 / 3)] * 3)
    assert w[1, :2].tolist() == pytest.approx([0.75**0.5] * 2)


def test_mis_drops_ratios_outside_the_band():
    w, m = correction_weights(OLD, ROLLOUT, MASK, "mis", "token", cap=2.0)
    # 3 > 2 and 1/4 < 1/2 are dropped; 1, 1.5, 0.5 (= 1/cap, inclusive) kept with weight 1.
    assert w.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    assert m["rollout_correction/corrected_frac"].item() == pytest.approx(2 / 5)
    w, _ = correction_weights(OLD, ROLLOUT, MASK, "mis", "sequence", cap=1.2)
    assert w.tolist() == [[0.0] * 3, [0.0, 0.0, 0.0]]  # 0.75 < 1/1.2 for both


def test_mismatch_kl_is_zero_when_the_engines_agree_and_k3_otherwise():
    assert mismatch_kl(OLD, OLD, MASK).item() == 0.0
    per_token = [r - LN(r) - 1 for r in (3.0, 0.25, 1.0, 1.5, 0.5)]
    assert mismatch_kl(OLD, ROLLOUT, MASK).item() == pytest.approx(sum(per_token) / 5)


def test_correction_needs_the_engine_logprobs_and_a_valid_config():
    cfg = GRPOLossConfig(kl_coef=0.0, rollout_correction="tis")
    lp = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="needs the engine's log-probs"):
        grpo_loss(lp, lp.detach(), None, torch.ones(2, 3), MASK, None, cfg)
    with pytest.raises(ValueError, match="rollout_correction must be one of none, tis, mis"):
        GRPOLossConfig(rollout_correction="is")
    with pytest.raises(ValueError, match="rollout_correction_cap must be > 1"):
        GRPOLossConfig(rollout_correction_cap=1.0)


def _policy_gradient(mode: str, samples: torch.Tensor, logits: torch.Tensor,
                     log_q: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The gradient of grpo_loss on one-token responses sampled from q (the engine)."""
    logits = logits.clone().requires_grad_(True)
    logp_NV = torch.log_softmax(logits, -1).expand(len(samples), -1)
    lp_N1 = logp_NV.gather(1, samples[:, None])
    adv = reward[samples] - reward[samples].mean()
    cfg = GRPOLossConfig(kl_coef=0.0, rollout_correction=mode, rollout_correction_cap=100.0)
    mask = torch.ones_like(lp_N1)
    loss, _ = grpo_loss(lp_N1, lp_N1.detach(), None, adv[:, None], mask, None, cfg,
                        log_q[samples][:, None])  # fmt: skip
    loss.backward()
    return -logits.grad  # ascent direction


def test_tis_turns_a_perturbed_engine_gradient_into_the_on_policy_one():
    torch.manual_seed(0)
    V = 6
    logits = torch.randn(V)
    reward = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    p = torch.softmax(logits, -1)
    # The engine samples at temperature 1.6 (the mismatch), not 1.
    log_q = torch.log_softmax(logits / 1.6, -1)
    samples = torch.multinomial(log_q.exp(), 200_000, replacement=True)
    # On policy: d/dlogits E_p[r] = p * (r - E_p[r]) (softmax policy gradient, exact).
    exact = p * (reward - (p * reward).sum())
    plain = _policy_gradient("none", samples, logits, log_q, reward)
    tis = _policy_gradient("tis", samples, logits, log_q, reward)

    def cosine(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    err_plain, err_tis = (plain - exact).norm() / exact.norm(), (tis - exact).norm() / exact.norm()
    assert err_tis < 0.1 < err_plain, (err_tis, err_plain)
    assert cosine(tis, exact) > 0.999
