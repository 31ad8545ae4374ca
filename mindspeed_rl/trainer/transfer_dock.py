"""The transfer dock: a per-sample table that stages fill column by column.

Each column (response, reward, old / reference log-probs, advantages, ...) has a readiness
flag per sample, so a stage can start on the samples that are ready (e.g. scoring the
responses of the first rank that finished generating) instead of waiting for the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class TransferDock:
    """Columns of per-sample values with readiness flags."""

    def __init__(self, size: int, columns: Iterable[str]):
        self.size = size
        self._data: dict[str, list[Any]] = {c: [None] * size for c in columns}
        self._ready: dict[str, list[bool]] = {c: [False] * size for c in self._data}

    @property
    def columns(self) -> list[str]:
        return list(self._data)

    def _column(self, column: str) -> list[Any]:
        if column not in self._data:
            raise KeyError(f"transfer dock has no column {column!r}; columns: {self.columns}")
        return self._data[column]

    def put(self, column: str, indices: Sequence[int], values: Sequence[Any]) -> None:
        """Store ``values`` for ``indices`` and mark them ready."""
        data = self._column(column)
        if len(indices) != len(values):
            raise ValueError(f"{len(indices)} indices but {len(values)} values for {column}")
        for i, v in zip(indices, values):
            data[i] = v
            self._ready[column][i] = True

    def ready(self, column: str) -> list[int]:
        """Indices whose ``column`` is filled."""
        self._column(column)
        return [i for i, r in enumerate(self._ready[column]) if r]

    def all_ready(self, column: str) -> bool:
        self._column(column)
        return all(self._ready[column])

    def get(self, column: str, indices: Sequence[int] | None = None) -> list[Any]:
        """Values of ``column`` (all samples by default); every asked sample must be ready."""
        data = self._column(column)
        indices = range(self.size) if indices is None else indices
        missing = [i for i in indices if not self._ready[column][i]]
        if missing:
            raise ValueError(f"column {column} is not ready for samples {missing[:5]}")
        return [data[i] for i in indices]
