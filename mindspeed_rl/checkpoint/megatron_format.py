"""Megatron-LM's checkpoint directory layout, and the metadata we keep in it.

    SAVE_DIR/latest_checkpointed_iteration.txt        "1"
    SAVE_DIR/iter_0000001/mp_rank_TT[_PPP]/model_optim_rng.pt
    SAVE_DIR/hf_meta/                                  config.json, tokenizer, chat template

Each ``model_optim_rng.pt`` holds ``{"model": state_dict, "checkpoint_version": 3.0,
"iteration": N, "mindspeed_rl": {...}}``; the last entry records the model spec and the layout
so a checkpoint can be converted back or resharded without the original HF directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mindspeed_rl.errors import UserError, first_line
from mindspeed_rl.models.spec import ModelSpec

TRACKER = "latest_checkpointed_iteration.txt"
HF_META_DIR = "hf_meta"
RANK_FILE = "model_optim_rng.pt"
TRAINING_STATE_DIR = "dist_ckpt"
"""In a trainer's ``iter_N``: model and optimizer through megatron-core's dist_checkpointing
(see :mod:`mindspeed_rl.training.checkpoint`); the plain rank files are hf2mcore's layout."""
FORMAT_VERSION = 1

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported parameter dtype {dtype}")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a Megatron checkpoint written by mindspeed-rl says about itself."""

    spec: ModelSpec
    tp: int
    pp: int
    padded_vocab_size: int
    params_dtype: str

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "tp": self.tp,
            "pp": self.pp,
            "padded_vocab_size": self.padded_vocab_size,
            "params_dtype": self.params_dtype,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckpointMeta:
        return cls(
            spec=ModelSpec.from_dict(data["spec"]),
            tp=data["tp"],
            pp=data["pp"],
            padded_vocab_size=data["padded_vocab_size"],
            params_dtype=data["params_dtype"],
        )

    def stage_layers(self, pp_rank: int) -> range:
        """Global layer indices held by pipeline stage ``pp_rank``."""
        per = self.spec.layers_per_stage(self.pp)
        return range(pp_rank * per, (pp_rank + 1) * per)


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def rank_dir_name(tp_rank: int, pp_rank: int, pp: int) -> str:
    return f"mp_rank_{tp_rank:02d}" if pp == 1 else f"mp_rank_{tp_rank:02d}_{pp_rank:03d}"


def rank_file(root: Path, iteration: int, tp_rank: int, pp_rank: int, pp: int) -> Path:
    return root / iter_dir_name(iteration) / rank_dir_name(tp_rank, pp_rank, pp) / RANK_FILE


def save_rank(
    root: Path,
    iteration: int,
    tp_rank: int,
    pp_rank: int,
    meta: CheckpointMeta,
    model_state: dict[str, torch.Tensor],
    extra: dict | None = None,
) -> Path:
    """Write one rank's ``model_optim_rng.pt``; ``extra`` adds optimizer / RNG entries."""
    path = rank_file(root, iteration, tp_rank, pp_rank, meta.pp)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model_state,
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "mindspeed_rl": meta.to_dict(),
    }
    if extra:
        payload.update(extra)
    torch.save(payload, path)
    return path


def write_tracker(root: Path, iteration: int) -> None:
    (root / TRACKER).write_text(f"{iteration}\n")


def read_iteration(root: Path) -> int:
    """The iteration named by the tracker file, with one-line errors for non-checkpoints."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Megatron checkpoint directory {root} does not exist; check --load-dir")
    tracker = root / TRACKER
    if not tracker.is_file():
        raise UserError(
            f"{root} is not a Megatron checkpoint: it has no {TRACKER}; point --load-dir at "
            "the directory hf2mcore or training wrote"
        )
    text = tracker.read_text().strip()
    if text == "release":
        raise UserError(f"{tracker} says 'release'; only iteration checkpoints are supported")
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{tracker} should hold an iteration number, found {text!r}") from None


def load_rank(root: Path, iteration: int, tp_rank: int, pp_rank: int, pp: int) -> dict:
    """Load one rank file (memory-mapped, so untouched tensors cost no memory)."""
    path = rank_file(root, iteration, tp_rank, pp_rank, pp)
    if not path.is_file():
        raise UserError(f"checkpoint rank file {path} is missing; the checkpoint is incomplete")
    return _load_pt(path)


def _load_pt(path: Path) -> dict:
    """A rank file, memory-mapped and without unpickling code; one line when it is damaged."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:
        raise UserError(
            f"{path}: not a readable checkpoint file ({first_line(err, 200)}); the save is damaged"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a checkpoint")
    return state


def read_meta(root: Path, iteration: int | None = None) -> tuple[int, CheckpointMeta]:
    """Iteration and metadata of a checkpoint (the tracker's iteration, or ``iteration``);
    checks every rank file is present."""
    if iteration is None:
        iteration = read_iteration(root)
    elif not (Path(root) / iter_dir_name(iteration)).is_dir():
        have = sorted(p.name for p in Path(root).glob("iter_*"))
        raise UserError(
            f"{root} has no {iter_dir_name(iteration)}; it has {', '.join(have) or 'none'}"
        )
    # Stage 0 of TP rank 0 is mp_rank_00 without PP and mp_rank_00_000 with it.
    candidates = [rank_file(root, iteration, 0, 0, pp) for pp in (1, 2)]
    present = [c for c in candidates if c.is_file()]
    if not present:
        raise UserError(
            f"checkpoint in {root} is incomplete: neither {candidates[0]} nor "
            f"{candidates[1]} exists"
        )
    first = _load_pt(present[0])
    if "mindspeed_rl" not in first:
        raise UserError(
            f"{root} was not written by mindspeed-rl (no layout metadata in its rank files)"
        )
    meta = CheckpointMeta.from_dict(first["mindspeed_rl"])
    missing = [
        str(rank_file(root, iteration, t, p, meta.pp))
        for p in range(meta.pp)
        for t in range(meta.tp)
        if not rank_file(root, iteration, t, p, meta.pp).is_file()
    ]
    if missing:
        raise UserError(
            f"checkpoint in {root} is incomplete: {len(missing)} rank file(s) missing, "
            f"first {missing[0]}"
        )
    return iteration, meta
