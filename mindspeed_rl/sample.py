"""One typed record per response, from the rollout to the loss, and a batch of them.

A :class:`Sample` is made by the rollout (prompt, response, the engine's log-probs, why it
ended), scored by the reward role, and filled in by the later phases (old / reference
log-probs, advantage); each phase returns new records (``dataclasses.replace``), never edits
one in place. Worked example, one prompt with a group of two::

    s = Sample(prompt_ids=[1, 2], label="4", group=0, version=3,
               response_ids=[7, 8], rollout_logprobs=[-0.1, -2.3], finish=Finish.STOP)
    s = replace(s, reward=RewardResult(1.0, {"math": 1.0}, {"math": ""}), text="... 4")
    batch = Batch((s, other))          # the G samples of a prompt are contiguous
    batch = batch.with_column("advantage", [0.7, -0.7])
    batch.response_ids                 # [[7, 8], [...]]: the columns the actor reads
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import TYPE_CHECKING

from mindspeed_rl.rewards.base import RewardResult

if TYPE_CHECKING:
    from mindspeed_rl.rollout.base import Completion


class Finish(str, Enum):
    """Why a response ended (vLLM's ``finish_reason`` values)."""

    STOP = "stop"
    """End of sequence or a stop token."""
    LENGTH = "length"
    """Cut at ``sampling.max_tokens`` (or the engine's length limit)."""
    ABORT = "abort"
    """Stopped by the engine before either (partial rollouts)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One response to one prompt, with everything the phases after the rollout add."""

    prompt_ids: list[int]
    label: str
    """The ground truth the reward compares the response with."""
    group: int
    """The prompt's index in its batch: the G samples of a prompt share it."""
    version: int
    """The iteration whose weights sampled the response (0: the initial policy)."""
    response_ids: list[int]
    rollout_logprobs: list[float] | None
    """The inference engine's log-prob of each response token (rollout/base.py's
    convention); None for samples no engine made (tests, benches)."""
    finish: Finish
    reward: RewardResult | None = None
    """Set by the reward role: the rule scorers' total, parts and reasons."""
    text: str = ""
    """The response as the scorers read it (assistant prefix + decoded response)."""
    penalty: float = 0.0
    """Reward shaping added to the rule reward (DAPO's overlong penalty, <= 0)."""
    old_logprobs: list[float] | None = None
    """The training engine's log-probs before the update (when a batch feeds several updates)."""
    ref_logprobs: list[float] | None = None
    """The frozen reference model's log-probs (when the KL coefficient is not zero)."""
    advantage: float | None = None

    @property
    def total_reward(self) -> float:
        """What advantages are computed from: the rule reward plus any shaping."""
        if self.reward is None:
            raise ValueError("sample is not scored yet: its reward is computed by the reward role")
        return self.reward.total + self.penalty

    @property
    def tokens(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)

    def to_json(self) -> dict:
        """The sample as JSON-ready data (a checkpoint keeps the batch collected ahead);
        :meth:`from_json` gives back an equal sample (floats round-trip exactly)."""
        out = {f.name: getattr(self, f.name) for f in fields(Sample)}
        out["finish"] = self.finish.value
        if self.reward is not None:
            r = self.reward
            out["reward"] = {"total": r.total, "parts": r.parts, "reasons": r.reasons}
        return out

    @staticmethod
    def from_json(data: dict) -> Sample:
        reward = data.get("reward")
        return Sample(**{**data, "finish": Finish(data["finish"]),
                         "reward": None if reward is None else RewardResult(**reward)})  # fmt: skip


def sample_groups(
    prompts: Sequence[list[int]], labels: Sequence[str], completions: Sequence[Sequence[Completion]],
    version: int,
) -> list[list[Sample]]:  # fmt: skip
    """An engine's completions (grouped per prompt, in prompt order) as unscored samples."""
    return [
        [Sample(prompt_ids=list(prompt), label=label, group=i, version=version,
                response_ids=list(c.token_ids), rollout_logprobs=list(c.logprobs),
                finish=Finish(c.finish_reason)) for c in group]
        for i, (prompt, label, group) in enumerate(zip(prompts, labels, completions))
    ]  # fmt: skip


_FIELDS = frozenset(f.name for f in fields(Sample))


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples in order, the G samples of each prompt contiguous; column views for the actor."""

    samples: tuple[Sample, ...]

    @staticmethod
    def from_columns(
        prompt_ids: Sequence[list[int]],
        response_ids: Sequence[list[int]],
        advantages: Sequence[float] | None = None,
        old_logprobs: Sequence[list[float]] | None = None,
        ref_logprobs: Sequence[list[float]] | None = None,
        rollout_logprobs: Sequence[list[float]] | None = None,
    ) -> Batch:
        """A batch from plain columns (tests, benches, tools): one prompt group per sample,
        label empty, version 0, finished by a stop token."""
        if len(prompt_ids) != len(response_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
        n = len(prompt_ids)

        def col(values: Sequence | None, i: int):
            return None if values is None else values[i]

        return Batch(tuple(
            Sample(prompt_ids=list(prompt_ids[i]), label="", group=i, version=0,
                   response_ids=list(response_ids[i]),
                   rollout_logprobs=col(rollout_logprobs, i),
                   finish=Finish.STOP, advantage=col(advantages, i),
                   old_logprobs=col(old_logprobs, i), ref_logprobs=col(ref_logprobs, i))
            for i in range(n)
        ))  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def with_column(self, name: str, values: Sequence) -> Batch:
        """A new batch whose samples have field ``name`` set to ``values`` (one per sample)."""
        if name not in _FIELDS:
            raise KeyError(f"Sample has no field {name!r}")
        if len(values) != len(self.samples):
            raise ValueError(f"{len(values)} values of {name} for {len(self.samples)} samples")
        return Batch(tuple(replace(s, **{name: v}) for s, v in zip(self.samples, values)))

    def _column(self, name: str) -> list | None:
        """The column ``name``, or None when no sample has it yet (training columns are all
        set by one phase or none)."""
        values = [getattr(s, name) for s in self.samples]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"{name} is set on some samples and not others")
        return values

    # The columns the training engine reads (training/actor.py).
    @property
    def prompt_ids(self) -> list[list[int]]:
        return [s.prompt_ids for s in self.samples]

    @property
    def response_ids(self) -> list[list[int]]:
        return [s.response_ids for s in self.samples]

    @property
    def advantages(self) -> list[float] | None:
        return self._column("advantage")

    @property
    def old_logprobs(self) -> list[list[float]] | None:
        return self._column("old_logprobs")

    @property
    def ref_logprobs(self) -> list[list[float]] | None:
        return self._column("ref_logprobs")

    @property
    def rollout_logprobs(self) -> list[list[float]] | None:
        return self._column("rollout_logprobs")

    @property
    def rewards(self) -> list[float]:
        return [s.total_reward for s in self.samples]

    def training_view(self) -> Batch:
        """The same samples without what only the driver reads (decoded text, reward
        reasons): what is shipped to every training rank."""
        return Batch(tuple(replace(s, text="", reward=None, label="") for s in self.samples))
