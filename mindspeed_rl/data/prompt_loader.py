"""Batches of prompts from a preprocessed dataset, in an order that can be resumed exactly.

Epoch ``e`` visits the rows in the order of a permutation seeded by ``(seed, e)``, so the order
is a function of the seed and the epoch alone; the loader's state is just where it is in that
order. ``state_dict()`` after batch ``k`` and ``load_state_dict()`` in a new process give batch
``k + 1`` next, the same one an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindspeed_rl.data.indexed import PromptDataset


@dataclass
class PromptLoaderConfig:
    """Where the prompts come from and how they are batched."""

    data_prefix: str
    """Prefix of a preprocessed dataset (``output_prefix`` of its dataset config)."""
    batch_size: int
    """Prompts per batch (B; the trainer samples G responses for each)."""
    seed: int = 1234
    """Shuffle seed; epoch ``e`` uses the permutation seeded by ``(seed, e)``."""
    shuffle: bool = True
    """Visit rows in a seeded random order (False: file order)."""
    drop_last: bool = True
    """Skip an epoch's last, short batch, so every batch has ``batch_size`` prompts."""

    def __post_init__(self) -> None:
        if not self.data_prefix:
            raise ValueError("data_prefix must name a preprocessed dataset")
        if isinstance(self.batch_size, bool) or not (
            isinstance(self.batch_size, int) and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.seed, bool) or not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class PromptBatch:
    """B prompts with their ground truth."""

    indices: list[int]
    """Row index of each prompt in the dataset."""
    prompt_ids: list[list[int]]
    """Prompt token ids."""
    labels: list[str]
    """Ground-truth label of each prompt, for the scorers."""
    epoch: int
    """Epoch the batch belongs to."""


class PromptLoader:
    """Shuffled batches of prompts, epoch after epoch, with a resumable position."""

    def __init__(self, config: PromptLoaderConfig, dataset: PromptDataset | None = None):
        self.config = config
        self.dataset = dataset if dataset is not None else PromptDataset(Path(config.data_prefix))
        if config.drop_last and len(self.dataset) < config.batch_size:
            raise ValueError(
                f"{config.data_prefix}: {len(self.dataset)} rows, fewer than batch_size "
                f"{config.batch_size}; lower batch_size or set drop_last: false"
            )
        self.epoch = 0
        self.position = 0
        """Rows of the current epoch's order already handed out."""
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rows = len(self.dataset)
        if not self.config.shuffle:
            return np.arange(rows)
        return np.random.default_rng([self.config.seed, epoch]).permutation(rows)

    def __len__(self) -> int:
        """Batches per epoch."""
        rows, size = len(self.dataset), self.config.batch_size
        return rows // size if self.config.drop_last else -(-rows // size)

    def _epoch_done(self) -> bool:
        left = len(self.dataset) - self.position
        return left == 0 or (self.config.drop_last and left < self.config.batch_size)

    def _start_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        self._order = self._epoch_order(epoch)

    def next_batch(self) -> PromptBatch:
        """The next batch, starting the next epoch (a new order) when this one is used up."""
        if self._epoch_done():
            self._start_epoch(self.epoch + 1)
        indices = self._order[self.position : self.position + self.config.batch_size].tolist()
        self.position += len(indices)
        return PromptBatch(
            indices=indices,
            prompt_ids=[self.dataset.prompt_ids(i) for i in indices],
            labels=[self.dataset.label(i) for i in indices],
            epoch=self.epoch,
        )

    def __iter__(self) -> Iterator[PromptBatch]:
        """The rest of the current epoch (all of it for a fresh loader): one pass, e.g. for
        validation. Called again after a finished pass, it makes a pass over the next epoch."""
        if self._epoch_done():
            self._start_epoch(self.epoch + 1)
        while not self._epoch_done():
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """The position, plus what it is only meaningful with (seed, rows, batch size)."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.config.seed,
            "shuffle": self.config.shuffle,
            "rows": len(self.dataset),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; refuses a state saved with another seed or dataset size."""
        for key, mine in (
            ("seed", self.config.seed),
            ("shuffle", self.config.shuffle),
            ("rows", len(self.dataset)),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"prompt loader state has {key}={state[key]!r} but this loader has "
                    f"{key}={mine!r}; resume with the same data and seed"
                )
        if not 0 <= state["position"] <= len(self.dataset):
            raise ValueError(f"prompt loader state has position {state['position']} out of range")
        self._start_epoch(int(state["epoch"]))
        self.position = int(state["position"])
