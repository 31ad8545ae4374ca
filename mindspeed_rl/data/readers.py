"""Raw dataset rows from json, jsonl, parquet or csv files, each with where it came from.

A line that cannot be read (not UTF-8, not JSON, not an object) comes back as a record with an
error, so the caller can stop with a message naming the file and line, or count it and go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindspeed_rl.errors import UserError

FORMATS = ("auto", "json", "jsonl", "parquet", "csv")
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Record:
    """One raw row, or why it could not be read."""

    where: str
    """``file:line`` (jsonl), ``file: item N`` (json) or ``file: row N`` (parquet)."""
    row: dict[str, Any] | None
    error: str | None = None


def input_format(path: Path, declared: str = "auto") -> str:
    """The format of ``path``: ``declared``, or guessed from its suffix when ``auto``."""
    if declared != "auto":
        return declared
    if path.suffix.lower() not in _SUFFIXES:
        raise UserError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            "use .json, .jsonl, .parquet or .csv, or set input_format"
        )
    return _SUFFIXES[path.suffix.lower()]


def _jsonl_records(path: Path) -> Iterator[Record]:
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.start + 1].hex()
                yield Record(
                    where, None, f"not valid UTF-8 (byte 0x{bad} at column {err.start + 1})"
                )
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield Record(where, None, f"invalid JSON at column {err.colno}: {err.msg}")
                continue
            if not isinstance(row, dict):
                yield Record(where, None, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield Record(where, row)


def _json_records(path: Path) -> Iterator[Record]:
    raw = path.read_bytes()
    if not raw.lstrip().startswith(b"["):
        # Many datasets called .json are JSON lines.
        yield from _jsonl_records(path)
        return
    try:
        items = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    for index, row in enumerate(items, start=1):
        where = f"{path}: item {index}"
        if isinstance(row, dict):
            yield Record(where, row)
        else:
            yield Record(where, None, f"expected a JSON object, got {type(row).__name__}")


def _parquet_records(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                index += 1
                yield Record(f"{path}: row {index}", row)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: cannot read as parquet: {err}") from None


def _csv_records(path: Path) -> Iterator[Record]:
    """Rows of a CSV file with a header line (GPQA ships as one); fields are text."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for index, row in enumerate(reader, start=1):
                where = f"{path}: row {index}"
                if None in row or None in row.values():
                    yield Record(where, None, "not as many fields as the header names")
                    continue
                yield Record(where, dict(row))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
    except csv.Error as err:
        raise UserError(f"{path}: cannot read as CSV: {err}") from None


def read_records(path: Path, declared_format: str = "auto") -> Iterator[Record]:
    """Every row of ``path`` in file order; blank jsonl lines are not rows."""
    if not path.is_file():
        raise UserError(f"{path}: input file not found; fix 'input' in the dataset config")
    readers = {"json": _json_records, "jsonl": _jsonl_records, "parquet": _parquet_records,
               "csv": _csv_records}  # fmt: skip
    return readers[input_format(path, declared_format)](path)
