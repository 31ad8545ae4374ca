"""Raw dataset -> R1 prompts: read rows, apply a handler and a template, tokenize, filter by
length, write a Megatron indexed dataset with a summary of what was kept and dropped.

    summary = preprocess(load_dataset_config("gsm8k", ["workers=1"]))
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from mindspeed_rl.data.handlers import Handler, RowError, RowView, get_handler
from mindspeed_rl.data.indexed import SUMMARY, write_prompt_dataset
from mindspeed_rl.data.readers import FORMATS, read_records
from mindspeed_rl.data.templates import REPO_ROOT, Template, get_template
from mindspeed_rl.data.tokenization import (
    encode_prompts,
    load_hf_tokenizer,
    tokenizer_fingerprint,
)
from mindspeed_rl.errors import UserError, first_line

DATASET_CONFIGS = REPO_ROOT / "configs" / "datasets"
# How many bad rows the summary lists by name; the count covers them all.
MAX_LISTED_BAD_ROWS = 20


@dataclass
class DatasetConfig:
    """One dataset's preprocessing recipe (``configs/datasets/NAME.yaml``).

    Relative paths are relative to the repository root, wherever the command runs from.
    """

    input: str
    """Raw dataset file: .json (array or JSON lines), .jsonl or .parquet."""
    output_prefix: str
    """Where the indexed dataset goes: ``PREFIX_prompt.bin/.idx``, ``PREFIX_label.bin/.idx``,
    ``PREFIX_summary.json``."""
    handler: str
    """Row format: deepscaler, math, gsm8k, countdown or generic."""
    template: str = "qwen_r1"
    """Prompt template name, from configs/model/templates.json or ``templates_file``."""
    tokenizer: str = "models/SmolLM2-135M-Instruct"
    """Hugging Face tokenizer directory of the policy model."""
    templates_file: str | None = None
    """Extra templates (same shape as configs/model/templates.json); they win on a name clash."""
    map_keys: dict[str, str] = field(default_factory=dict)
    """Handler field -> this dataset's key, e.g. ``{problem: prompt}``; dots reach into nested
    objects (``{label: reward_model.ground_truth}``)."""
    input_format: str = "auto"
    """auto (from the file suffix), json, jsonl or parquet."""
    max_prompt_length: int = 1024
    """Prompts longer than this many tokens are dropped (and counted in the summary)."""
    workers: int = 1
    """Tokenizer processes."""
    skip_bad_rows: bool = False
    """Count and skip rows that cannot be used, instead of stopping at the first one."""
    limit: int | None = None
    """Read at most this many rows (None: all)."""

    def __post_init__(self) -> None:
        for name in ("input", "output_prefix", "handler", "template", "tokenizer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.input_format not in FORMATS:
            raise ValueError(f"input_format must be one of {', '.join(FORMATS)}")
        if not isinstance(self.map_keys, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in self.map_keys.items()
        ):
            raise ValueError("map_keys must map field names to dataset keys (strings)")
        if isinstance(self.max_prompt_length, bool) or not (
            isinstance(self.max_prompt_length, int) and self.max_prompt_length > 0
        ):
            raise ValueError(
                f"max_prompt_length must be a positive integer, got {self.max_prompt_length!r}"
            )
        if isinstance(self.workers, bool) or not (
            isinstance(self.workers, int) and self.workers >= 1
        ):
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not isinstance(self.skip_bad_rows, bool):
            raise ValueError(f"skip_bad_rows must be true or false, got {self.skip_bad_rows!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be a positive integer or null, got {self.limit!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> DatasetConfig:
        """Build from a parsed YAML mapping; ``source`` names it in error messages."""
        allowed = [f.name for f in fields(cls)]
        for key in data:
            if key not in allowed:
                raise UserError(
                    f"{source}: unknown key {key!r}; allowed keys: {', '.join(allowed)}"
                )
        missing = [name for name in ("input", "output_prefix", "handler") if name not in data]
        if missing:
            raise UserError(f"{source}: missing key {missing[0]!r}")
        try:
            return cls(**data)
        except ValueError as err:
            raise UserError(f"{source}: {err}") from None


def load_dataset_config(name: str, overrides: Sequence[str] = ()) -> DatasetConfig:
    """The dataset config ``configs/datasets/NAME.yaml`` (or the YAML file ``name``), with
    ``key=value`` overrides applied (``map_keys.question=prompt`` reaches into mappings)."""
    is_file = name.endswith((".yaml", ".yml"))
    path = Path(name).expanduser() if is_file else DATASET_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in DATASET_CONFIGS.glob("*.yaml")))
        raise UserError(
            f"{path}: no such dataset config; use one of {shipped} or a path to a .yaml file"
        )
    for override in overrides:
        if "=" not in override:
            raise UserError(f"override {override!r}: expected key=value, e.g. workers=4")
    try:
        merged = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
        data = OmegaConf.to_container(merged, resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise UserError(f"{path}: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values")
    return DatasetConfig.from_dict(data, source=str(path))


def resolve_path(path: str, root: Path = REPO_ROOT) -> Path:
    """``path`` as given if absolute, else under ``root`` (the repository)."""
    resolved = Path(path).expanduser()
    return Path(os.path.normpath(resolved if resolved.is_absolute() else root / resolved))


def _bad_row(where: str, why: str) -> str:
    hint = "map the key with map_keys, " if "has no key" in why else ""
    return f"{where}: {why}; fix the row, {hint}or set skip_bad_rows: true to skip such rows"


@dataclass
class _Rows:
    """What reading a dataset gave: usable examples and the rows that were not."""

    questions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    read: int = 0
    bad: list[str] = field(default_factory=list)
    bad_kinds: Counter[str] = field(default_factory=Counter)


def _read_rows(config: DatasetConfig, handler: Handler, input_path: Path, progress: bool) -> _Rows:
    rows = _Rows()
    records = read_records(input_path, config.input_format)
    for record in tqdm(records, desc="read", unit=" rows", disable=None if progress else True):
        if config.limit is not None and rows.read >= config.limit:
            break
        rows.read += 1
        why = record.error
        if why is None:
            try:
                example = handler.convert(RowView(record.row, config.map_keys))
            except RowError as err:
                why = str(err)
        if why is not None:
            if not config.skip_bad_rows:
                raise UserError(_bad_row(record.where, why))
            rows.bad.append(f"{record.where}: {why}")
            # Group by what went wrong, without the column numbers and byte values.
            rows.bad_kinds[why.split(" (")[0].split(" at column")[0]] += 1
            continue
        rows.questions.append(example.question)
        rows.labels.append(example.label)
    if rows.read == 0:
        raise UserError(f"{input_path}: the dataset has no rows; point 'input' at a dataset")
    if not rows.questions:
        raise UserError(
            f"{input_path}: none of the {rows.read} rows could be used, e.g. {rows.bad[0]}; "
            f"check 'handler' ({config.handler}) and 'map_keys'"
        )
    return rows


def _encode_rows(
    config: DatasetConfig, template: Template, tokenizer_path: Path, rows: _Rows, progress: bool
) -> tuple[list[tuple[list[int], str]], int]:
    """``(prompt ids, label)`` of the rows whose prompt fits, and how many did not."""
    needs_hf = template.chat_template or not (tokenizer_path / "tokenizer.json").is_file()
    hf_tokenizer = load_hf_tokenizer(tokenizer_path) if needs_hf else None
    prompts = [template.render(q, hf_tokenizer) for q in rows.questions]
    encoded = encode_prompts(prompts, tokenizer_path, config.workers, hf_tokenizer)
    bar = tqdm(
        encoded,
        desc="tokenize",
        unit=" rows",
        total=len(prompts),
        disable=None if progress else True,
    )
    kept: list[tuple[list[int], str]] = []
    lengths_dropped = []
    for ids, label in zip(bar, rows.labels):
        if len(ids) > config.max_prompt_length:
            lengths_dropped.append(len(ids))
        else:
            kept.append((ids, label))
    if not kept:
        raise UserError(
            f"{config.input}: all {len(prompts)} prompts are longer than max_prompt_length="
            f"{config.max_prompt_length} tokens (shortest {min(lengths_dropped)}); "
            "raise max_prompt_length"
        )
    return kept, len(lengths_dropped)


def preprocess(config: DatasetConfig, progress: bool = False) -> dict[str, Any]:
    """Preprocess one dataset; returns the summary that is also written next to it."""
    handler = get_handler(config.handler, config.map_keys)
    templates_file = resolve_path(config.templates_file) if config.templates_file else None
    template = get_template(config.template, templates_file)
    input_path = resolve_path(config.input)
    tokenizer_path = resolve_path(config.tokenizer)
    output_prefix = resolve_path(config.output_prefix)
    if not tokenizer_path.is_dir():
        raise UserError(f"{tokenizer_path}: tokenizer directory not found; fix 'tokenizer'")
    rows = _read_rows(config, handler, input_path, progress)
    kept, too_long = _encode_rows(config, template, tokenizer_path, rows, progress)

    lengths = [len(ids) for ids, _ in kept]
    summary = {
        "input": str(input_path),
        "output_prefix": str(output_prefix),
        "handler": config.handler,
        "template": config.template,
        "assistant_prefix": template.assistant_prefix,
        "tokenizer": str(tokenizer_path),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer_path),
        "max_prompt_length": config.max_prompt_length,
        "rows_read": rows.read,
        "rows_kept": len(kept),
        "rows_dropped": {"bad_row": len(rows.bad), "too_long": too_long},
        "dropped_why": {
            **dict(rows.bad_kinds.most_common()),
            **({f"longer than {config.max_prompt_length} tokens": too_long} if too_long else {}),
        },
        "bad_rows": rows.bad[:MAX_LISTED_BAD_ROWS],
        "prompt_tokens": {
            "min": min(lengths),
            "mean": round(statistics.fmean(lengths), 1),
            "max": max(lengths),
        },
        "summary_file": str(output_prefix) + SUMMARY,
    }
    write_prompt_dataset(output_prefix, kept, summary)
    return summary
