"""GRPO / DAPO / Dr.GRPO math against hand-computed values, and the first-step invariants."""

from __future__ import annotations

import math

import pytest
import torch

from mindspeed_rl.algorithms import (
    AGGREGATORS,
    KL_ESTIMATORS,
    GRPOLossConfig,
    aggregate,
    broadcast_to_tokens,
    clipped_policy_loss,
    compute_token_advantages,
    group_sample_indices,
    grpo_advantages,
    grpo_loss,
    informative_groups,
    kl_k1,
    kl_k2,
    kl_k3,
    mean_centred_advantages,
    overlong_penalty,
)


def close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    torch.testing.assert_close(
        actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0
    )


# ---------------------------------------------------------------------------- advantages


def test_grpo_advantages_hand_computed():
    # Group [1, 0, 0]: mean 1/3, unbiased std sqrt(1/3). Group [1, 1, 1]: all equal -> 0.
    # Group [0.5, 0, 1]: mean 0.5, unbiased std 0.5.
    rewards_N = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0, 1.0])
    s = math.sqrt(1 / 3)
    expected = [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s, 0, 0, 0, 0, -1, 1]
    close(grpo_advantages(rewards_N, group_size=3), expected)


def test_grpo_advantages_use_the_unbiased_std():
    # G = 2, rewards [1, 0]: unbiased std sqrt(0.5) -> +-0.7071 (biased would give +-1).
    close(grpo_advantages(torch.tensor([1.0, 0.0]), 2), [math.sqrt(0.5), -math.sqrt(0.5)])


def test_integer_rewards_are_not_integer_divided():
    close(mean_centred_advantages(torch.tensor([1, 0, 0]), 3), [2 / 3, -1 / 3, -1 / 3])


def test_dr_grpo_advantages_are_mean_centred_only():
    rewards_N = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0, 1.0])
    expected = [2 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0, -0.5, 0.5]
    close(mean_centred_advantages(rewards_N, group_size=3), expected)


def test_advantages_broadcast_over_response_tokens():
    mask_NT = torch.tensor([[1, 1, 0], [1, 0, 0]])
    close(broadcast_to_tokens(torch.tensor([2.0, -1.0]), mask_NT), [[2, 2, 0], [-1, 0, 0]])
    rewards_N = torch.tensor([1.0, 0.0])
    grpo_NT = compute_token_advantages(rewards_N, mask_NT, group_size=2)
    close(grpo_NT, [[math.sqrt(0.5), math.sqrt(0.5), 0], [-math.sqrt(0.5), 0, 0]])
    dr_NT = compute_token_advantages(rewards_N, mask_NT, group_size=2, norm_by_std=False)
    close(dr_NT, [[0.5, 0.5, 0], [-0.5, 0, 0]])


@pytest.mark.parametrize(
    ("rewards", "group_size", "needle"),
    [
        (torch.zeros(6), 4, "divide"),
        (torch.zeros(2, 3), 3, "flat"),
        (torch.zeros(4), 1, ">= 2"),
    ],
)
def test_advantages_reject_bad_shapes(rewards, group_size, needle):
    with pytest.raises(ValueError, match=needle):
        grpo_advantages(rewards, group_size)


# ---------------------------------------------------------------------------- KL


def test_kl_estimators_hand_computed():
    logprobs_NT = torch.tensor([[-1.0, -2.0]])
    ref_NT = torch.tensor([[-1.5, -1.0]])
    close(kl_k1(logprobs_NT, ref_NT), [[0.5, -1.0]])
    close(kl_k2(logprobs_NT, ref_NT), [[0.125, 0.5]])
    # ref - logp = [-0.5, 1.0]: exp(-0.5) + 0.5 - 1 and e - 2.
    close(kl_k3(logprobs_NT, ref_NT), [[math.exp(-0.5) - 0.5, math.e - 2.0]])


def test_k3_is_clamped_and_finite_far_from_the_reference():
    logprobs_NT = torch.tensor([[0.0, -40.0, -1.0]])
    ref_NT = torch.tensor([[-30.0, 0.0, -1.0]])
    close(kl_k3(logprobs_NT, ref_NT), [[10.0, 10.0, 0.0]])


@pytest.mark.parametrize("name", sorted(KL_ESTIMATORS))
def test_kl_is_zero_when_the_policy_is_the_reference(name):
    logprobs_NT = torch.tensor([[-0.3, -2.5, -7.0]])
    close(KL_ESTIMATORS[name](logprobs_NT, logprobs_NT.clone()), [[0.0, 0.0, 0.0]])


# ---------------------------------------------------------------------------- aggregation

VALUES_NT = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
RAGGED_MASK_NT = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),  # 2.5
        ("seq-mean-token-mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),  # 3.0
        ("seq-mean-token-sum-norm", ((1 + 2 + 3) / 4 + 4 / 4) / 2),  # 1.25, max length 4
    ],
)
def test_aggregation_modes_on_a_ragged_batch(mode, expected):
    close(aggregate(VALUES_NT, RAGGED_MASK_NT, mode, max_response_length=4), expected)
    # A padding row (no valid token) changes none of them.
    padded_NT = torch.cat([VALUES_NT, torch.tensor([[7.0, 8.0, 9.0]])])
    padded_mask_NT = torch.cat([RAGGED_MASK_NT, torch.zeros(1, 3, dtype=torch.long)])
    close(aggregate(padded_NT, padded_mask_NT, mode, max_response_length=4), expected)


def test_aggregation_of_no_tokens_is_zero():
    for mode in AGGREGATORS:
        close(aggregate(VALUES_NT, torch.zeros(2, 3), mode, max_response_length=4), 0.0)


def test_aggregation_rejects_unknown_mode_and_missing_length():
    with pytest.raises(ValueError, match="unknown loss_agg_mode 'seq-sum'"):
        aggregate(VALUES_NT, RAGGED_MASK_NT, "seq-sum")
    with pytest.raises(ValueError, match="max_response_length"):
        aggregate(VALUES_NT, RAGGED_MASK_NT, "seq-mean-token-sum-norm")


# ---------------------------------------------------------------------------- policy loss


def four_tokens() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ratios [1.5, 0.5, 0.5, 1.5] with advantages [+1, +1, -1, -1], all tokens valid.

    Symmetric eps 0.2: per-token max(-A r, -A clip(r)) = [-1.2, -0.5, 0.8, 1.5];
    tokens 1 and 3 take the clipped term.
    """
    old_NT = torch.tensor([[-1.0, -1.0], [-2.0, -2.0]])
    ratio_NT = torch.tensor([[1.5, 0.5], [0.5, 1.5]])
    logprobs_NT = old_NT + ratio_NT.log()
    advantages_NT = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    return logprobs_NT, old_NT, advantages_NT, torch.ones(2, 2)


def test_clipped_loss_hand_computed():
    logprobs_NT, old_NT, advantages_NT, mask_NT = four_tokens()
    loss, metrics = clipped_policy_loss(logprobs_NT, old_NT, advantages_NT, mask_NT, 0.2, 0.2)
    close(loss, (-1.2 - 0.5 + 0.8 + 1.5) / 4)
    close(metrics["actor/clip_frac"], 0.5)
    close(metrics["actor/ratio_mean"], 1.0)
    close(metrics["actor/ratio_max"], 1.5)
    # mean(old - new) = -mean(log r) = -(2 ln 1.5 + 2 ln 0.5) / 4
    close(metrics["actor/ppo_kl"], -0.5 * math.log(0.75))


def test_grpo_loss_adds_kl_and_subtracts_entropy():
    logprobs_NT, old_NT, advantages_NT, mask_NT = four_tokens()
    ref_NT = logprobs_NT - torch.tensor([[0.1, 0.2], [0.3, 0.4]])  # k1 = [0.1 .. 0.4]
    entropy_NT = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    config = GRPOLossConfig(kl_coef=0.1, kl_estimator="k1", entropy_coef=0.02)
    loss, metrics = grpo_loss(
        logprobs_NT, old_NT, ref_NT, advantages_NT, mask_NT, entropy_NT, config
    )
    # 0.15 + 0.1 * 0.25 - 0.02 * 2.5
    close(loss, 0.125)
    close(metrics["actor/pg_loss"], 0.15)
    close(metrics["actor/kl"], 0.25)
    close(metrics["actor/entropy"], 2.5)
    close(metrics["actor/loss"], 0.125)
    assert all(not value.requires_grad for value in metrics.values())


def test_grpo_loss_needs_what_its_coefficients_use():
    logprobs_NT, old_NT, advantages_NT, mask_NT = four_tokens()
    with pytest.raises(ValueError, match="kl_coef"):
        grpo_loss(logprobs_NT, old_NT, None, advantages_NT, mask_NT, None, GRPOLossConfig())
    no_kl = GRPOLossConfig(kl_coef=0.0, entropy_coef=0.01)
    with pytest.raises(ValueError, match="entropy_coef"):
        grpo_loss(logprobs_NT, old_NT, None, advantages_NT, mask_NT, None, no_kl)
    loss, metrics = grpo_loss(
        logprobs_NT, old_NT, None, advantages_NT, mask_NT, None, GRPOLossConfig(kl_coef=0.0)
    )
    close(loss, 0.15)
    assert "actor/kl" not in metrics and "actor/entropy" not in metrics


@pytest.mark.parametrize("estimator", sorted(KL_ESTIMATORS))
def test_first_step_invariants(estimator):
    """old = ref = current: ratio 1, nothing clipped, KL 0."""
    torch.manual_seed(0)
    logprobs_NT = -torch.rand(3, 5) * 4
    mask_NT = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    advantages_NT = broadcast_to_tokens(torch.tensor([1.0, -0.5, 2.0]), mask_NT)
    config = GRPOLossConfig(kl_coef=0.1, kl_estimator=estimator)
    _, metrics = grpo_loss(
        logprobs_NT, logprobs_NT.clone(), logprobs_NT.clone(), advantages_NT, mask_NT, None, config
    )
    close(metrics["actor/ratio_mean"], 1.0)
    close(metrics["actor/ratio_max"], 1.0)
    close(metrics["actor/clip_frac"], 0.0)
    close(metrics["actor/ppo_kl"], 0.0)
    close(metrics["actor/kl"], 0.0)


@pytest.mark.parametrize(
    ("mode", "normaliser_N"),
    [
        ("token-mean", [8.0, 8.0, 8.0]),  # all 8 valid tokens
        ("seq-mean-token-mean", [3 * 4.0, 3 * 1.0, 3 * 3.0]),  # 3 sequences x own length
        ("seq-mean-token-sum-norm", [3 * 6.0, 3 * 6.0, 3 * 6.0]),  # 3 sequences x max length 6
    ],
)
def test_gradient_at_ratio_one_is_minus_advantage_over_normaliser(mode, normaliser_N):
    torch.manual_seed(0)
    current_NT = -torch.rand(3, 5) * 4
    mask_NT = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    advantages_NT = broadcast_to_tokens(torch.tensor([1.0, -0.5, 2.0]), mask_NT)
    logprobs_NT = current_NT.clone().requires_grad_(True)
    # k3 (and k2) have zero gradient where policy = reference, so only the PG term remains.
    config = GRPOLossConfig(
        kl_coef=0.5, kl_estimator="k3", loss_agg_mode=mode, max_response_length=6
    )
    loss, _ = grpo_loss(
        logprobs_NT, current_NT, current_NT.clone(), advantages_NT, mask_NT, None, config
    )
    loss.backward()
    expected_NT = -advantages_NT / torch.tensor(normaliser_N).unsqueeze(-1)
    close(logprobs_NT.grad, expected_NT, atol=1e-6)


def test_clip_higher_clips_asymmetrically():
    # One positive-advantage token at ratio 1.25, one negative-advantage token at ratio 0.75.
    old_NT = torch.tensor([[-1.0, -1.0]])
    current_NT = old_NT + torch.tensor([[1.25, 0.75]]).log()
    advantages_NT = torch.tensor([[1.0, -1.0]])
    mask_NT = torch.ones(1, 2)

    def run(eps_low: float, eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs_NT = current_NT.clone().requires_grad_(True)
        loss, metrics = clipped_policy_loss(
            logprobs_NT, old_NT, advantages_NT, mask_NT, eps_low, eps_high
        )
        loss.backward()
        return metrics["actor/clip_frac"], logprobs_NT.grad

    # Symmetric 0.2: 1.25 > 1.2 and 0.75 < 0.8, both clipped, no gradient.
    clip_frac, grad_NT = run(0.2, 0.2)
    close(clip_frac, 1.0)
    close(grad_NT, [[0.0, 0.0]])
    # Clip-higher (0.2, 0.28): 1.25 < 1.28 still learns, d(-A r / 2 tokens)/dlogp = -1.25 / 2;
    # the low side is unchanged.
    clip_frac, grad_NT = run(0.2, 0.28)
    close(clip_frac, 0.5)
    close(grad_NT, [[-1.25 / 2, 0.0]])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"clip_eps_low": 0.0}, "loss.clip_eps_low must be in (0, 1)"),
        ({"clip_eps_low": 1.0}, "loss.clip_eps_low must be in (0, 1)"),
        ({"clip_eps_high": -0.1}, "loss.clip_eps_high must be > 0"),
        ({"kl_coef": -1.0}, "loss.kl_coef must be >= 0"),
        (
            {"kl_estimator": "low_var_kl"},
            "loss.kl_estimator 'low_var_kl' is unknown; use one of k1",
        ),
        ({"entropy_coef": -0.1}, "loss.entropy_coef must be >= 0"),
        ({"loss_agg_mode": "seq-sum"}, "loss.loss_agg_mode 'seq-sum' is unknown"),
        ({"max_response_length": 0}, "loss.max_response_length must be >= 1"),
        ({"loss_agg_mode": "seq-mean-token-sum-norm"}, "loss.max_response_length must be set"),
    ],
)
def test_loss_config_rejects_bad_values(overrides, needle):
    with pytest.raises(ValueError) as err:
        GRPOLossConfig(**overrides)
    assert needle in str(err.value)


# ---------------------------------------------------------------------------- DAPO


def test_dynamic_sampling_keeps_groups_with_varied_rewards():
    rewards_N = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0])
    keep_K = informative_groups(rewards_N, group_size=3)
    assert keep_K.tolist() == [1, 3]
    assert group_sample_indices(keep_K, 3).tolist() == [3, 4, 5, 9, 10, 11]
    assert informative_groups(torch.ones(4), 2).tolist() == []
    with pytest.raises(ValueError, match="group_size 3"):
        informative_groups(torch.ones(4), 3)


def test_overlong_penalty_at_the_boundaries():
    # max 10, buffer 4: no penalty up to 6, linear over 7..10, full beyond.
    lengths_N = torch.tensor([0, 6, 7, 8, 10, 11, 20])
    close(overlong_penalty(lengths_N, 10, 4), [0, 0, -0.25, -0.5, -1, -1, -1])
    close(overlong_penalty(lengths_N, 10, 4, 0.5), [0, 0, -0.125, -0.25, -0.5, -0.5, -0.5])
    # Buffer = max: the ramp starts at length 0.
    close(overlong_penalty(torch.tensor([0, 5, 10]), 10, 10), [0, -0.5, -1])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0, 1, 1.0), "max_length must be >= 1"),
        ((10, 0, 1.0), "buffer_length must be in [1, max_length=10]"),
        ((10, 11, 1.0), "buffer_length must be in [1, max_length=10]"),
        ((10, 4, -1.0), "penalty_factor must be >= 0"),
    ],
)
def test_overlong_penalty_rejects_bad_arguments(args, needle):
    with pytest.raises(ValueError) as err:
        overlong_penalty(torch.tensor([1]), *args)
    assert needle in str(err.value)
