"""A scorer for the eval tests, importable by the scorer worker processes."""

from mindspeed_rl.rewards.base import Score


def text_parity(response: str, label: str) -> Score:
    """1.0 when the response's code points sum to an even number: a pure function of the text
    that marks about half of a random model's responses right, so two runs agree on pass@1
    only when they agree on the responses."""
    return Score(1.0 if sum(map(ord, response)) % 2 == 0 else 0.0)
