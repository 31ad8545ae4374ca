"""Named scorers, their weighted combination, and the batch API the trainer calls.

    scorer = RewardScorer(RewardConfig(scorers={"math": 1.0, "format": 0.1}, timeout_s=1.0))
    results = scorer.score_batch(responses, labels)   # results[i].total, results[i].parts

Every (response, scorer) pair runs in a worker process with its own time limit, so a scorer
that hangs costs one sample's score, never the batch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mindspeed_rl.errors import UserError
from mindspeed_rl.rewards.base import RewardResult, Scorer
from mindspeed_rl.rewards.choice import choice_accuracy
from mindspeed_rl.rewards.countdown import countdown_accuracy
from mindspeed_rl.rewards.format import r1_format_lenient, r1_format_strict
from mindspeed_rl.rewards.gsm8k import gsm8k_accuracy
from mindspeed_rl.rewards.math import math_accuracy
from mindspeed_rl.rewards.pool import ScorerPool

SCORERS: dict[str, Scorer] = {
    "math": math_accuracy,
    "format": r1_format_strict,
    "format_lenient": r1_format_lenient,
    "gsm8k": gsm8k_accuracy,
    "countdown": countdown_accuracy,
    "choice": choice_accuracy,
}
"""Built-in scorers by name. A config may also name any ``package.module:function``."""

FORMAT_SCORERS = frozenset({"format", "format_lenient"})
"""The built-in scorers that judge the output's shape, not its answer."""

_resolved: dict[str, Scorer] = {}


def resolve_scorer(name: str) -> Scorer:
    """The scorer called ``name``: a built-in, or ``module:function`` imported on first use."""
    if name in SCORERS:
        return SCORERS[name]
    if name not in _resolved:
        module_name, sep, attr = name.partition(":")
        if not sep:
            known = ", ".join(sorted(SCORERS))
            raise ValueError(f"unknown scorer {name!r}; use one of {known} or 'module:function'")
        try:
            function = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"scorer {name!r} cannot be imported: {err}") from err
        if not callable(function):
            raise ValueError(f"scorer {name!r} is not callable")
        _resolved[name] = function
    return _resolved[name]


def warm_up() -> None:
    """Run each built-in scorer once, so a fresh worker's first real sample is not the one that
    pays for building math-verify's LaTeX parser."""
    for scorer in SCORERS.values():
        scorer("<think>x</think> <answer>\\frac{1}{2}</answer>", "0.5")


@dataclass
class RewardConfig:
    """Which scorers make the reward, with what weights, under what limits."""

    scorers: dict[str, float] = field(default_factory=lambda: {"math": 1.0})
    """Scorer name -> weight; the reward is the weighted sum. Weight 0 logs a scorer's part
    without rewarding it."""
    timeout_s: float = 1.0
    """Per-sample, per-scorer time limit in seconds; a sample that runs past it scores 0."""
    workers: int = 2
    """Scorer processes."""
    memory_limit_mb: int | None = 4096
    """Address-space limit of each scorer process (None: no limit); a sample that hits it
    scores 0."""
    accuracy: str | None = None
    """The scorer that says whether an answer is right (reward/accuracy, val/accuracy, eval's
    pass@k); None: the first scorer that is not a format scorer (else the first)."""
    format: str | None = None
    """The scorer reported as reward/format and val/format; None: the first built-in format
    scorer among ``scorers`` (none: no format figure)."""

    def __post_init__(self) -> None:
        if not self.scorers:
            raise ValueError("reward.scorers is empty; name at least one scorer, e.g. {math: 1.0}")
        for name, weight in self.scorers.items():
            resolve_scorer(name)
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"reward.scorers.{name}: weight must be a number, got {weight!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"reward.timeout_s must be > 0, got {self.timeout_s}")
        if self.workers < 1:
            raise ValueError(f"reward.workers must be >= 1, got {self.workers}")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 256:
            raise ValueError(f"reward.memory_limit_mb must be >= 256, got {self.memory_limit_mb}")
        for role in ("accuracy", "format"):
            name = getattr(self, role)
            if name is not None and name not in self.scorers:
                raise ValueError(
                    f"reward.{role}={name!r} is not one of reward.scorers "
                    f"({', '.join(self.scorers)}); name one of them or leave it unset"
                )

    @property
    def accuracy_scorer(self) -> str:
        """The scorer whose part is the accuracy (see ``accuracy``)."""
        if self.accuracy is not None:
            return self.accuracy
        return next((n for n in self.scorers if n not in FORMAT_SCORERS), next(iter(self.scorers)))

    @property
    def format_scorer(self) -> str | None:
        """The scorer whose part is the format rate (see ``format``), or None."""
        if self.format is not None:
            return self.format
        return next((n for n in self.scorers if n in FORMAT_SCORERS), None)


class RewardScorer:
    """Scores batches of responses with the configured scorers in a pool of processes."""

    def __init__(self, config: RewardConfig):
        self.config = config
        self._pool = ScorerPool(config.workers, config.timeout_s, config.memory_limit_mb)

    def score_batch(
        self, responses: Sequence[str], labels: Sequence[str],
        scorers: dict[str, float] | None = None,
    ) -> list[RewardResult]:  # fmt: skip
        """One :class:`RewardResult` per response; ``labels[i]`` is the ground truth of
        ``responses[i]``. ``scorers`` (name -> weight) replaces the configured ones for this
        batch (a held-out set with a scorer of its own). Never raises on model output."""
        if len(responses) != len(labels):
            raise ValueError(f"{len(responses)} responses but {len(labels)} labels")
        weights = scorers or self.config.scorers
        names = list(weights)
        tasks = [(name, r, lab) for r, lab in zip(responses, labels) for name in names]
        scores = self._pool.run(tasks)
        for k, score in enumerate(scores):
            if not math.isfinite(score.value):
                i, j = divmod(k, len(names))
                preview = responses[i][-80:].replace("\n", " ")
                raise UserError(
                    f"reward scorer {names[j]!r} gave {score.value} for response {i} "
                    f"(...{preview!r}){': ' + score.reason if score.reason else ''}; a scorer "
                    "must return a finite Score (or number)"
                )
        results = []
        for i in range(len(responses)):
            mine = dict(zip(names, scores[i * len(names) : (i + 1) * len(names)]))
            results.append(
                RewardResult(
                    total=sum(weights[n] * s.value for n, s in mine.items()),
                    parts={n: s.value for n, s in mine.items()},
                    reasons={n: s.reason for n, s in mine.items()},
                )
            )
        return results

    @property
    def restarts(self) -> int:
        """Scorer processes replaced after a timeout or crash so far."""
        return self._pool.restarts

    def close(self) -> None:
        """Stop the scorer processes."""
        self._pool.close()

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
