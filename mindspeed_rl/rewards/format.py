"""R1 output format: ``<think>...</think>`` then ``<answer>...</answer>``.

When a template ends with an assistant prefix (``<think>``), the trainer scores
``prefix + response`` so the prefix counts as written by the model.
"""

from __future__ import annotations

from mindspeed_rl.rewards.base import Score

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def r1_format_strict(response: str, label: str) -> Score:
    """1.0 for exactly ``<think>…</think> <answer>…</answer>``: each tag once, in order, nothing
    outside them but whitespace, and a non-empty answer. ``label`` is not used."""
    text = response.strip()
    for tag in _TAGS:
        if text.count(tag) != 1:
            return Score(0.0, f"{tag} must appear exactly once")
    if not text.startswith(THINK_OPEN) or not text.endswith(ANSWER_CLOSE):
        return Score(0.0, "text outside <think>/<answer>")
    between = text[text.index(THINK_CLOSE) + len(THINK_CLOSE) : text.index(ANSWER_OPEN)]
    if between.strip():
        return Score(0.0, "text between </think> and <answer>")
    answer = text[text.index(ANSWER_OPEN) + len(ANSWER_OPEN) : -len(ANSWER_CLOSE)]
    if not answer.strip():
        return Score(0.0, "empty answer")
    return Score(1.0)


def r1_format_lenient(response: str, label: str) -> Score:
    """1.0 when ``</think>``, ``<answer>``, ``</answer>`` each appear once, in that order, with a
    non-empty answer; ``<think>`` at most once and before ``</think>``; any text around them.
    ``label`` is not used."""
    for tag in (THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        if response.count(tag) != 1:
            return Score(0.0, f"{tag} must appear exactly once")
    think_open = response.find(THINK_OPEN)
    think_close = response.index(THINK_CLOSE)
    answer_open = response.index(ANSWER_OPEN)
    answer_close = response.index(ANSWER_CLOSE)
    if response.count(THINK_OPEN) > 1 or think_open > think_close:
        return Score(0.0, "<think> repeated or after </think>")
    if not think_close < answer_open < answer_close:
        return Score(0.0, "tags out of order")
    if not response[answer_open + len(ANSWER_OPEN) : answer_close].strip():
        return Score(0.0, "empty answer")
    return Score(1.0)
