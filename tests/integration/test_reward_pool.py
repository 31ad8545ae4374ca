"""The reward pool on real data and hostile input: bounded time, score 0, no crash."""

import json
from pathlib import Path

import pytest

from mindspeed_rl.rewards import RewardConfig, RewardScorer

GSM8K_TEST = Path(__file__).resolve().parents[2] / "assets" / "gsm8k" / "test.jsonl"
FIXTURE = "tests.integration.reward_fixtures:hang_or_crash"


@pytest.fixture(scope="module")
def scorer():
    config = RewardConfig(
        scorers={"math": 1.0, "gsm8k": 1.0, "format": 0.1, "countdown": 1.0},
        timeout_s=1.0,
        workers=2,
    )
    with RewardScorer(config) as scorer:
        yield scorer


def _r1_response(solution: str, answer: str) -> str:
    reasoning = solution.rsplit("####", 1)[0].strip()
    return f"<think>{reasoning}</think> <answer>{answer}</answer>"


def test_every_gsm8k_test_row_scores_its_own_reference_answer():
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()]
    assert len(rows) == 1319
    answers = [r["answer"].rsplit("####", 1)[1].strip() for r in rows]
    labels = [a.replace(",", "") for a in answers]
    right = [_r1_response(r["answer"], a) for r, a in zip(rows, answers)]
    wrong = [_r1_response(r["answer"], str(int(lab) + 1)) for r, lab in zip(rows, labels)]
    # A generous limit: these are ordinary answers, and the test must not flake on a busy box.
    config = RewardConfig(
        scorers={"gsm8k": 1.0, "math": 1.0, "format": 0.0}, timeout_s=5.0, workers=2
    )
    with RewardScorer(config) as scorer:
        good = scorer.score_batch(right, labels)
        bad = scorer.score_batch(wrong, labels)
    assert [r.parts for r in good if r.total != 2.0] == []
    assert all(r.parts["format"] == 1.0 for r in good)
    assert [r.parts for r in bad if r.total != 0.0] == []


def test_adversarial_inputs_score_zero_within_the_limit(scorer):
    label_countdown = json.dumps({"nums": [9, 9, 9, 9], "target": 5})
    cases = {
        "1 MB response": ("x" * 1_000_000, "5"),
        "1 MB answer": ("<answer>" + "9" * 1_000_000 + "</answer>", "5"),
        "10,000 nested braces": ("<answer>" + "{" * 10_000 + "5" + "}" * 10_000 + "</answer>", "5"),
        "10,000 nested boxes": ("\\boxed{" * 10_000 + "5" + "}" * 10_000, "6"),
        "unbalanced braces": ("\\boxed{" * 10_000, "5"),
        "9**9**9**9": ("<answer>9**9**9**9</answer>", label_countdown),
        "10**10**10": ("<answer>10**10**10</answer>", label_countdown),
        "power tower in LaTeX": ("<answer>9^{9^{9^{9}}}</answer>", "5"),
        "unbalanced tags": ("<think><answer>5</think></answer><answer>", "5"),
        "empty answer": ("<think>hmm</think><answer></answer>", "5"),
    }
    results = scorer.score_batch([r for r, _ in cases.values()], [lab for _, lab in cases.values()])
    assert len(results) == len(cases)
    for name, result in zip(cases, results):
        assert result.total == 0.0, (name, result)
    # A pathological sample costs its own score, never the batch: the pool still works.
    after = scorer.score_batch(["<think>a</think><answer>5</answer>"], ["5"])
    assert after[0].parts == {"math": 1.0, "gsm8k": 1.0, "format": 1.0, "countdown": 0.0}


def test_stuck_and_crashing_workers_are_replaced():
    config = RewardConfig(scorers={FIXTURE: 1.0}, timeout_s=2.0, workers=2)
    responses = ["ok", "hang", "ok", "crash", "raise", "ok", "hang", "ok"]
    with RewardScorer(config) as scorer:
        results = scorer.score_batch(responses, ["5"] * len(responses))
        reasons = [r.reasons[FIXTURE] for r in results]
        assert [r.total for r in results] == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
        assert reasons[1] == reasons[6] == "timeout"
        assert reasons[3] == "scorer process died"
        assert reasons[4] == "error: RuntimeError"
        assert scorer.restarts == 3
        again = scorer.score_batch(["ok"] * 4, ["5"] * 4)
        assert [r.total for r in again] == [1.0] * 4


def test_weighted_sum_and_parts(scorer):
    response = "<think>a</think><answer>5</answer>"
    [result] = scorer.score_batch([response], ["5"])
    assert result.total == pytest.approx(1.0 + 1.0 + 0.1)
    assert result.reasons["countdown"] == "bad label"


def test_mismatched_lengths_are_a_caller_error(scorer):
    with pytest.raises(ValueError, match="2 responses but 1 labels"):
        scorer.score_batch(["a", "b"], ["5"])
