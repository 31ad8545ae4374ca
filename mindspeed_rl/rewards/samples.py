"""The reward role: decode each sample's response, score it with the rule scorers, and return
the sample with its reward and the text that was scored."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mindspeed_rl.rewards.registry import RewardConfig, RewardScorer
from mindspeed_rl.sample import Sample


class SampleScorer:
    """Scores :class:`~mindspeed_rl.sample.Sample` records (the Ray reward worker and the
    in-process evaluation both use it)."""

    def __init__(self, config: RewardConfig, tokenizer: Any, assistant_prefix: str) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.prefix = assistant_prefix
        """Prepended to each decoded response: the part of the assistant turn the prompt
        template already wrote (e.g. ``<think>``), which the format scorer must see."""
        self.scorer = RewardScorer(config)

    def __call__(
        self, samples: list[Sample], scorers: dict[str, float] | None = None
    ) -> list[Sample]:
        """``samples`` scored; ``scorers`` (name -> weight) replaces the configured ones."""
        decoded = self.tokenizer.batch_decode(
            [s.response_ids for s in samples], skip_special_tokens=True
        )
        texts = [self.prefix + t for t in decoded]
        results = self.scorer.score_batch(texts, [s.label for s in samples], scorers)
        return [replace(s, reward=r, text=t) for s, r, t in zip(samples, results, texts)]

    def close(self) -> None:
        self.scorer.close()

    def __enter__(self) -> SampleScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
