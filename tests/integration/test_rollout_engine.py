"""Rollout engines on a tiny model: grouping, reproducible sampling, clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mindspeed_rl.rollout import RolloutConfig, SamplingConfig, create_engine

PROMPTS = [[5, 17, 33], [99, 120, 7, 8], [200, 3]]


@pytest.fixture(scope="module")
def vllm_engine(tiny_qwen2_dir):
    engine = create_engine(
        RolloutConfig(engine="vllm", max_model_len=64, kv_cache_gb=1), str(tiny_qwen2_dir)
    )
    engine.load_weights(load_file(tiny_qwen2_dir / "model.safetensors").items())
    yield engine
    engine.shutdown()


def test_groups_come_back_in_prompt_order_with_n_samples(vllm_engine):
    sampling = SamplingConfig(n=4, max_tokens=6, seed=7)
    groups = vllm_engine.generate(PROMPTS, sampling)
    assert len(groups) == len(PROMPTS)
    for group in groups:
        assert len(group) == 4
        for c in group:
            assert 1 <= len(c.token_ids) <= 6
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
    # The G samples of a prompt differ (random weights, temperature 1).
    assert len({tuple(c.token_ids) for c in groups[0]}) > 1


def test_fixed_seed_reproduces_and_other_seed_differs(vllm_engine):
    a = vllm_engine.generate(PROMPTS, SamplingConfig(n=3, max_tokens=8, seed=11))
    b = vllm_engine.generate(PROMPTS, SamplingConfig(n=3, max_tokens=8, seed=11))
    c = vllm_engine.generate(PROMPTS, SamplingConfig(n=3, max_tokens=8, seed=12))

    def ids(groups):
        return [[tuple(x.token_ids) for x in g] for g in groups]

    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


def test_sampled_logprobs_match_prompt_logprobs(vllm_engine):
    # The log-prob reported for a sampled token is the model's log-prob of that token.
    prompt = PROMPTS[1]
    group = vllm_engine.generate([prompt], SamplingConfig(n=2, max_tokens=5, seed=3))[0]
    for c in group:
        scored = vllm_engine.prompt_logprobs([prompt + c.token_ids])[0][len(prompt) - 1 :]
        assert max(abs(x - y) for x, y in zip(scored, c.logprobs)) < 1e-4


def test_prompt_longer_than_max_model_len_is_refused(vllm_engine):
    with pytest.raises(ValueError, match="max_model_len is 64"):
        vllm_engine.generate([list(range(1, 80))], SamplingConfig(n=1, max_tokens=4))


def test_torch_engine_reproducible_and_grouped(tiny_llama_dir):
    engine = create_engine(RolloutConfig(engine="torch", max_model_len=64), str(tiny_llama_dir))
    engine.load_weights(load_file(tiny_llama_dir / "model.safetensors").items())
    a = engine.generate(PROMPTS, SamplingConfig(n=3, max_tokens=6, seed=5))
    b = engine.generate(PROMPTS, SamplingConfig(n=3, max_tokens=6, seed=5))
    assert [[x.token_ids for x in g] for g in a] == [[x.token_ids for x in g] for g in b]
    assert [len(g) for g in a] == [3, 3, 3]
    c = a[0][0]
    scored = engine.prompt_logprobs([PROMPTS[0] + c.token_ids])[0][len(PROMPTS[0]) - 1 :]
    assert max(abs(x - y) for x, y in zip(scored, c.logprobs)) < 1e-4
    with pytest.raises(ValueError, match="max_model_len"):
        engine.generate([list(range(1, 70))], SamplingConfig(n=1))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"bucket_mb": 0}, "bucket_mb must be > 0"),
        ({"engine": "sglang"}, "rollout.engine must be 'vllm' or 'torch'"),
        ({"dtype": "int8"}, "rollout.dtype"),
    ],
)
def test_bad_rollout_config(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        RolloutConfig(**kwargs)


def test_infer_tp_needs_vllm():
    # The torch fallback runs one model per process: no tensor parallelism across ranks.
    with pytest.raises(ValueError, match="infer_tp=2 needs rollout.engine=vllm"):
        RolloutConfig(engine="torch", infer_tp=2)
    assert RolloutConfig(engine="vllm", infer_tp=2).infer_tp == 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"n": 0}, "n must be"), ({"temperature": 0}, "temperature"), ({"top_p": 0}, "top_p")],
)
def test_bad_sampling_config(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SamplingConfig(**kwargs)


def test_resharder_refuses_zero_bucket():
    from mindspeed_rl.resharding.megatron_to_hf import MegatronToHF

    with pytest.raises(ValueError, match="bucket_mb must be > 0"):
        MegatronToHF(torch.nn.Linear(1, 1), None, bucket_mb=0, dtype=torch.float32)  # type: ignore[arg-type]
