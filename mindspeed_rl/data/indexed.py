"""Preprocessed prompt datasets as Megatron indexed datasets.

A dataset at ``PREFIX`` is five files:

- ``PREFIX_prompt.bin/.idx``: the prompt token ids of each row (int32),
- ``PREFIX_label.bin/.idx``: the ground-truth label of each row, UTF-8 bytes (uint8),
- ``PREFIX_summary.json``: what preprocessing read, kept and dropped, and why.

Both indexed datasets go through megatron-core's ``IndexedDatasetBuilder`` / ``IndexedDataset``,
so they are memory-mapped and readable by any Megatron tooling.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindspeed_rl.errors import UserError

with warnings.catch_warnings():
    # megatron.core's package import warns about missing Transformer Engine / Apex, which the
    # indexed dataset code does not use.
    warnings.simplefilter("ignore", UserWarning)
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

PROMPT = "_prompt"
LABEL = "_label"
SUMMARY = "_summary.json"


def dataset_files(prefix: str | Path) -> list[Path]:
    """Every file of the dataset at ``prefix``, the summary last (it marks a complete dataset)."""
    prefix = str(prefix)
    return [Path(prefix + part + ext) for part in (PROMPT, LABEL) for ext in (".bin", ".idx")] + [
        Path(prefix + SUMMARY)
    ]


def write_prompt_dataset(
    prefix: str | Path,
    rows: Iterable[tuple[list[int], str]],
    summary: dict[str, Any],
) -> int:
    """Write ``(prompt ids, label)`` rows and ``summary`` at ``prefix``; returns the row count.

    Files are written under a temporary prefix and renamed into place at the end, summary last,
    so a crash leaves no half-written dataset at ``prefix``.
    """
    final = Path(prefix)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    prompts = IndexedDatasetBuilder(str(temp) + PROMPT + ".bin", dtype=np.int32)
    labels = IndexedDatasetBuilder(str(temp) + LABEL + ".bin", dtype=np.uint8)
    count = 0
    try:
        for ids, label in rows:
            prompts.add_item(torch.tensor(ids, dtype=torch.int32))
            prompts.end_document()
            label_bytes = np.frombuffer(label.encode("utf-8"), dtype=np.uint8).copy()
            labels.add_item(torch.from_numpy(label_bytes))
            labels.end_document()
            count += 1
        prompts.finalize(str(temp) + PROMPT + ".idx")
        labels.finalize(str(temp) + LABEL + ".idx")
        Path(str(temp) + SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        for temp_file, final_file in zip(dataset_files(temp), dataset_files(final)):
            os.replace(temp_file, final_file)
    finally:
        for leftover in dataset_files(temp):
            leftover.unlink(missing_ok=True)
    return count


def _indexed(path_prefix: str) -> IndexedDataset:
    """megatron-core's reader of ``.idx`` / ``.bin``, with one line for a damaged pair (a
    truncated index, a data file shorter than its index says)."""
    try:
        dataset = IndexedDataset(path_prefix)
    except Exception as err:
        raise UserError(
            f"{path_prefix}.idx/.bin: damaged ({type(err).__name__}: {err}); preprocess again"
        ) from None
    sizes = dataset.sequence_lengths
    pointers = dataset.index.sequence_pointers if hasattr(dataset, "index") else None
    if pointers is not None and len(sizes):
        itemsize = dataset.index.dtype_size
        needed = int(pointers[-1]) + int(sizes[-1]) * itemsize
        have = Path(path_prefix + ".bin").stat().st_size
        if have < needed:
            raise UserError(
                f"{path_prefix}.bin: {have} bytes but its index needs {needed}; the file is "
                "truncated, preprocess again"
            )
    return dataset


class PromptDataset:
    """Read access to a preprocessed prompt dataset: ids and label of row ``i``."""

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        missing = [str(p) for p in dataset_files(prefix) if not p.is_file()]
        if missing:
            raise UserError(
                f"{self.prefix}: no preprocessed dataset ({missing[0]} is missing); "
                "run `python cli/preprocess_data.py NAME` or fix the data prefix"
            )
        summary_file = Path(self.prefix + SUMMARY)
        try:
            self.summary: dict[str, Any] = json.loads(summary_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{summary_file}: not valid JSON ({err}); preprocess again") from None
        if not isinstance(self.summary, dict):
            raise UserError(f"{summary_file}: expected a JSON object; preprocess again")
        self._prompts = _indexed(self.prefix + PROMPT)
        self._labels = _indexed(self.prefix + LABEL)
        if len(self._prompts) != len(self._labels):
            raise UserError(
                f"{self.prefix}: {len(self._prompts)} prompts but {len(self._labels)} labels; "
                "the dataset is damaged, preprocess it again"
            )

    def __len__(self) -> int:
        return len(self._prompts)

    def prompt_ids(self, index: int) -> list[int]:
        """Token ids of row ``index``'s prompt."""
        return self._prompts[index].tolist()

    def label(self, index: int) -> str:
        """Ground-truth label of row ``index``."""
        return self._labels[index].tobytes().decode("utf-8")

    @property
    def prompt_lengths(self) -> np.ndarray:
        """Prompt length in tokens of every row (a copy: the index's memory map closes with
        the dataset, and a view of it would outlive it)."""
        return np.array(self._prompts.sequence_lengths)
